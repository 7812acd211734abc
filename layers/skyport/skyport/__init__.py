"""Skyport core: the OCI Distribution protocol on S3 and DynamoDB, free of any web framework."""
