"""Authentication and authorization: users and robot accounts, the Docker token
protocol, grants (docs/auth.md). No HTTP here: the API function's ``auth.py`` maps
routes to scopes, reads credentials from headers and answers with challenges.

- ``policy``: scopes, identities, grants, and what one request may do (``Access``);
- ``tokens``: signed tokens (JWT, HS256), signing keys and key rings;
- ``passwords``: scrypt hashes of passwords and robot secrets;
- ``keys``: where signing keys come from (the table, Secrets Manager, Parameter Store);
- ``service``: the auth service (``AuthService``: authenticate, decide, issue, verify);
- ``identities``: identity admin (``IdentityAdmin``: what `skyport user|robot|grant|…` does);
- ``bootstrap``: the first admin of a deployed registry, from its secret.

``Registry`` (registry.py) builds the service and the admin with what its settings
name. This module imports none of them: the API function loads ``policy`` in its
init phase (the scopes its routes need), the rest on the first request with auth on.
"""
