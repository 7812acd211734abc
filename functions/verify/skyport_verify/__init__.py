"""The verifier function: checks a direct upload's SHA-256 (skyport.direct_uploads)."""
