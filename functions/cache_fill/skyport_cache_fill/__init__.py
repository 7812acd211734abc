"""CacheFillFunction: copies a pull-through cache's blob from upstream into S3."""
