// The contract between Berth's layers: zod schemas and the types derived from them. No Node
// APIs here, so the renderer can import it too.
export * from './errors';
export * from './issues';
export * from './config';
export * from './vm';
export * as protocol from './protocol';
export * from './lifecycle';
export * from './layout';
export * from './storage';
export * from './worker-spec';
export * from './host-actions';
