export * from './api-types';
export * from './server';
export { bundleThumbnail, THUMBNAIL_SIZES } from './images';
export { sampleSteps, nearestStep, conceptPlaces } from './views';
export { webBundle } from './web-bundle';
