"""PowerDNS, shared by the concerns that write DNS records: the HTTP API client
(``api``) and the zone layout (``records``: which servers serve a zone, primary first,
its records and the account stamp). The dns driver owns the zones; the tls driver's
DNS-01 writes one TXT record through the same client. No concern driver lives here."""
