export { bdbHashValues, isBdbHash } from './bdb-hash.ts';
export { parseDpkgStatus, type DpkgPackage } from './dpkg-status.ts';
export { imageInventory, type ImageInventoryOptions, type ImageKindName, type ImageSummary, type InventoryItem, type LayerSummary } from './image-inventory.ts';
export { installedKind, readInstalled, type InstalledKind, type InstalledPackage } from './installed-packages.ts';
export { OS_RELEASE_PATHS, parseOsRelease, type OsRelease } from './os-release.ts';
export { rpmdbAt, rpmdbPackages, type RpmdbFormat } from './rpmdb.ts';
export { isSqlite, sqliteRows, type SqliteRow, type SqliteValue } from './sqlite-table.ts';
