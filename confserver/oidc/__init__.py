"""Single sign-on with an OpenID provider (authorization code flow with PKCE): a sans-I/O core
(``flow``: the request, the sealed cookies, the callback, the ID token), the provider's HTTP
adapter (``provider``) and the pages and routes (``routes``, ``pages``). docs/SECURITY.md."""
