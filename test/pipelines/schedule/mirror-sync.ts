// The real mirror-sync pipeline, in the schedule tests' pipelines directory.
export { default } from '../../../pipelines/mirror-sync.ts';
