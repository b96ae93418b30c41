"""The Kafka APIs raftka serves, with the version range of each (what ApiVersions advertises).

The ranges are what current kafka-python, aiokafka and librdkafka negotiate
for producing, consuming with groups, and admin, capped where a newer version
needs something raftka does not have: Fetch and Produce stop before topic ids
(Fetch v13, Produce v13), OffsetFetch before batched groups (v8),
FindCoordinator before batched keys (v4), JoinGroup before KIP-814 (v8).
SASL (SaslHandshake advertised from v0, which librdkafka requires to see, but a
v0 handshake, whose tokens would follow outside Kafka frames, answers
ILLEGAL_SASL_STATE: clients use v1), ACLs from v1
(pattern types) and SCRAM users are served. Transactions, quotas, delegation
tokens and the KRaft controller APIs are absent:
ApiVersions leaves them out and a request for one answers UNSUPPORTED_VERSION
(`KNOWN_RESPONSES`: every API kafka-python has a schema for).
"""

from __future__ import annotations

from dataclasses import dataclass

import kafka.protocol.admin as _admin
import kafka.protocol.consumer as _consumer
import kafka.protocol.metadata as _metadata
import kafka.protocol.producer as _producer
import kafka.protocol.sasl as _sasl
from kafka.protocol.api_header import ResponseClassRegistry

__all__ = ["API_TABLE", "KNOWN_RESPONSES", "ApiSpec"]


@dataclass(frozen=True, slots=True)
class ApiSpec:
    key: int
    name: str
    request: type
    response: type
    min_version: int
    max_version: int


def _spec(request: type, response: type, min_version: int, max_version: int) -> ApiSpec:
    assert request.API_KEY == response.API_KEY and max_version <= request.max_version, request
    return ApiSpec(request.API_KEY, request.__name__.removesuffix("Request"), request, response, min_version,
                   max_version)


API_TABLE: dict[int, ApiSpec] = {spec.key: spec for spec in (
    _spec(_producer.ProduceRequest, _producer.ProduceResponse, 3, 9),
    _spec(_consumer.FetchRequest, _consumer.FetchResponse, 4, 12),
    _spec(_consumer.ListOffsetsRequest, _consumer.ListOffsetsResponse, 1, 6),
    _spec(_metadata.MetadataRequest, _metadata.MetadataResponse, 0, 12),
    _spec(_consumer.OffsetCommitRequest, _consumer.OffsetCommitResponse, 2, 8),
    _spec(_consumer.OffsetFetchRequest, _consumer.OffsetFetchResponse, 1, 7),
    _spec(_metadata.FindCoordinatorRequest, _metadata.FindCoordinatorResponse, 0, 3),
    _spec(_consumer.JoinGroupRequest, _consumer.JoinGroupResponse, 0, 7),
    _spec(_consumer.HeartbeatRequest, _consumer.HeartbeatResponse, 0, 4),
    _spec(_consumer.LeaveGroupRequest, _consumer.LeaveGroupResponse, 0, 4),
    _spec(_consumer.SyncGroupRequest, _consumer.SyncGroupResponse, 0, 5),
    _spec(_admin.DescribeGroupsRequest, _admin.DescribeGroupsResponse, 0, 5),
    _spec(_admin.ListGroupsRequest, _admin.ListGroupsResponse, 0, 4),
    _spec(_metadata.ApiVersionsRequest, _metadata.ApiVersionsResponse, 0, 3),
    _spec(_admin.CreateTopicsRequest, _admin.CreateTopicsResponse, 2, 7),
    _spec(_admin.DeleteTopicsRequest, _admin.DeleteTopicsResponse, 1, 5),
    _spec(_admin.DeleteRecordsRequest, _admin.DeleteRecordsResponse, 0, 2),
    _spec(_producer.InitProducerIdRequest, _producer.InitProducerIdResponse, 0, 4),
    _spec(_admin.DescribeConfigsRequest, _admin.DescribeConfigsResponse, 1, 4),
    _spec(_admin.AlterConfigsRequest, _admin.AlterConfigsResponse, 0, 2),
    _spec(_admin.CreatePartitionsRequest, _admin.CreatePartitionsResponse, 0, 3),
    _spec(_admin.DeleteGroupsRequest, _admin.DeleteGroupsResponse, 0, 2),
    _spec(_admin.IncrementalAlterConfigsRequest, _admin.IncrementalAlterConfigsResponse, 0, 1),
    _spec(_admin.DescribeClusterRequest, _admin.DescribeClusterResponse, 0, 1),
    _spec(_sasl.SaslHandshakeRequest, _sasl.SaslHandshakeResponse, 0, 1),
    _spec(_sasl.SaslAuthenticateRequest, _sasl.SaslAuthenticateResponse, 0, 2),
    _spec(_admin.DescribeAclsRequest, _admin.DescribeAclsResponse, 1, 3),
    _spec(_admin.CreateAclsRequest, _admin.CreateAclsResponse, 1, 3),
    _spec(_admin.DeleteAclsRequest, _admin.DeleteAclsResponse, 1, 3),
    _spec(_admin.DescribeUserScramCredentialsRequest, _admin.DescribeUserScramCredentialsResponse, 0, 0),
    _spec(_admin.AlterUserScramCredentialsRequest, _admin.AlterUserScramCredentialsResponse, 0, 0),
)}

KNOWN_RESPONSES: frozenset[int] = frozenset(ResponseClassRegistry._response_class_registry)
