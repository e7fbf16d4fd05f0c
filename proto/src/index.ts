export * from './schema.js';
export * from './validate.js';
export * from './vocabulary.js';
export * from './ids.js';
export * from './vectors.js';
export * from './prices.js';
export * from './retry-after.js';
export * from './ingest-token.js';
