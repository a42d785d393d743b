//! The error codes a response carries, for the `strom_errors_total{api, code}` metric: every
//! non-zero `error_code` at any level of the response (request, topic, partition, group,
//! member), counted once each, as Kafka's own `ErrorsPerSec{request, error}` counts them.
//!
//! Hand-written because `kafka-protocol` has no generic view of a response's error fields;
//! one small impl per served response type, next to nothing else.

use kafka_protocol::messages::*;

/// A response whose error codes can be listed.
pub trait ErrorCodes {
    /// Calls `f` with every error code in the response, zero (success) included.
    fn each_error_code(&self, f: &mut dyn FnMut(i16));
}

/// Records the response's non-zero error codes under `api`.
pub fn count(api: &'static str, response: &dyn ErrorCodes) {
    response.each_error_code(&mut |code| {
        if code != 0 {
            let name = kafka_protocol::ResponseError::try_from_code(code)
                .map_or_else(|| code.to_string(), |e| format!("{e:?}"));
            metrics::counter!("strom_errors_total", "api" => api, "code" => name).increment(1);
        }
    });
}

macro_rules! top_level {
    ($($t:ty),* $(,)?) => {$(
        impl ErrorCodes for $t {
            fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
                f(self.error_code);
            }
        }
    )*};
}

top_level!(
    InitProducerIdResponse,
    DescribeClusterResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    ListGroupsResponse,
    ApiVersionsResponse
);

impl ErrorCodes for ProduceResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for FetchResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.responses.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for OffsetForLeaderEpochResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for ListOffsetsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for MetadataResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.topics {
            f(t.error_code);
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for CreateTopicsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for DeleteTopicsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for CreatePartitionsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for kafka_protocol::messages::AlterPartitionReassignmentsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.responses.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for kafka_protocol::messages::ListPartitionReassignmentsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}

impl ErrorCodes for kafka_protocol::messages::ElectLeadersResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.replica_election_results.iter().flat_map(|t| &t.partition_result).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for DescribeConfigsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for AlterConfigsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for IncrementalAlterConfigsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for FindCoordinatorResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        if self.coordinators.is_empty() {
            f(self.error_code); // v0-v3: one coordinator at the top level
        }
        self.coordinators.iter().for_each(|c| f(c.error_code));
    }
}

impl ErrorCodes for JoinGroupResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}

impl ErrorCodes for LeaveGroupResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.members.iter().for_each(|m| f(m.error_code));
    }
}

impl ErrorCodes for DescribeGroupsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.groups.iter().for_each(|g| f(g.error_code));
    }
}

impl ErrorCodes for DeleteGroupsResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|g| f(g.error_code));
    }
}

impl ErrorCodes for OffsetCommitResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

impl ErrorCodes for OffsetFetchResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        // v0-v7 answer one group at the top level, v8+ a list of groups.
        f(self.error_code);
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        for g in &self.groups {
            f(g.error_code);
            g.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for OffsetDeleteResponse {
    fn each_error_code(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_codes_are_all_seen() {
        let resp = ProduceResponse::default().with_responses(vec![
            produce_response::TopicProduceResponse::default().with_partition_responses(vec![
                produce_response::PartitionProduceResponse::default().with_error_code(3),
                produce_response::PartitionProduceResponse::default(),
                produce_response::PartitionProduceResponse::default().with_error_code(10),
            ]),
        ]);
        let mut codes = Vec::new();
        resp.each_error_code(&mut |c| codes.push(c));
        assert_eq!(codes, vec![3, 0, 10]);
    }
}
