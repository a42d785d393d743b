//! [`BrokerClient`]: one Kafka-protocol connection from this broker to another (a follower's
//! fetches from its leader). The wire format is `kafka-protocol`'s; this is only the framing
//! (a 4-byte length, the request header, the body) and one request in flight at a time,
//! which is all a fetcher needs — so no general client library is pulled in (rdkafka cannot
//! send replica fetches).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a call to another broker failed. Each ends the connection: the caller reconnects.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, writing or reading failed.
    #[error("connection to {addr}: {source}")]
    Io {
        /// The broker's address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The request could not be encoded or the response decoded.
    #[error("{addr}: {source}")]
    Codec {
        /// The broker's address.
        addr: String,
        /// What failed.
        #[source]
        source: anyhow::Error,
    },
    /// The response answered another request, or is larger than allowed.
    #[error("{addr}: {reason}")]
    Protocol {
        /// The broker's address.
        addr: String,
        /// What was wrong.
        reason: String,
    },
}

/// One connection to another broker.
#[derive(Debug)]
pub struct BrokerClient {
    addr: String,
    stream: TcpStream,
    client_id: StrBytes,
    correlation_id: i32,
    max_response_bytes: usize,
}

impl BrokerClient {
    /// Connects to `addr` (host:port), naming itself `client_id`; responses larger than
    /// `max_response_bytes` are refused before they are read.
    pub async fn connect(addr: &str, client_id: &str, max_response_bytes: usize) -> Result<BrokerClient, ClientError> {
        let stream =
            TcpStream::connect(addr).await.map_err(|source| ClientError::Io { addr: addr.to_string(), source })?;
        let _ = stream.set_nodelay(true);
        Ok(BrokerClient {
            addr: addr.to_string(),
            stream,
            client_id: StrBytes::from_string(client_id.to_string()),
            correlation_id: 0,
            max_response_bytes,
        })
    }

    /// The address connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` at `version` and waits for its response.
    pub async fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, ClientError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header.encode(&mut buf, R::header_version(version)).map_err(|e| self.codec(e))?;
        request.encode(&mut buf, version).map_err(|e| self.codec(e))?;
        let len = i32::try_from(buf.len() - 4).map_err(|_| self.protocol("request too large".to_string()))?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await.map_err(|e| self.io(e))?;

        let len = self.stream.read_i32().await.map_err(|e| self.io(e))?;
        let len = usize::try_from(len).map_err(|_| self.protocol(format!("negative response length {len}")))?;
        if len > self.max_response_bytes {
            return Err(self.protocol(format!("response of {len} bytes exceeds {}", self.max_response_bytes)));
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await.map_err(|e| self.io(e))?;
        let mut body = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut body, R::Response::header_version(version)).map_err(|e| self.codec(e))?;
        if header.correlation_id != self.correlation_id {
            return Err(self.protocol(format!(
                "response correlation id {} for request {}",
                header.correlation_id, self.correlation_id
            )));
        }
        R::Response::decode(&mut body, version).map_err(|e| self.codec(e))
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io { addr: self.addr.clone(), source }
    }

    fn codec(&self, source: anyhow::Error) -> ClientError {
        ClientError::Codec { addr: self.addr.clone(), source }
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol { addr: self.addr.clone(), reason }
    }
}
