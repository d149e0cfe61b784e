// The same ticker as in good/: the broken directory needs one valid pipeline beside the broken one.
export { default } from '../good/ticker.ts';
