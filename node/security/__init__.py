"""raftka.node.security — who a client is and what it may do, the same for every front end.

`scram` (SCRAM-SHA-256/512 credentials and the server side of the exchange, RFC 5802/7677), `acl` (Kafka's
ACL model and the one authorization decision), `state` (users and ACLs in the metadata group), `peer`
(requests between brokers, signed with the cluster secret), `limiter` (failed logins per source address),
`tls` (certificates, reloaded on SIGHUP), `settings` (the security part of the broker configuration). The
service both front ends call — authenticate, authorize, manage users and ACLs — is
`raftka.node.services.security.SecurityService`.
"""
