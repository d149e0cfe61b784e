export const PAGE_HTML = '<!doctype html><title>sluice</title>';
