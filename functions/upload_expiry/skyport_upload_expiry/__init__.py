"""The upload expiry function: removes what abandoned uploads left (skyport.upload_expiry)."""
