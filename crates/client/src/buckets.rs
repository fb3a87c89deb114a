//! Bucket administration over `quorate.v1`, shared by the CLI, the tester and the bench.

use std::time::{Duration, Instant};

use proto::quorate::v1 as pb;
use proto::quorate::v1::buckets_client::BucketsClient;
use tonic::transport::Channel;

use crate::ClientError;

/// Pause between two attempts while the cluster cannot take a bucket definition yet.
const CREATE_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Creates `bucket` through any of `channels`, trying each in turn until `deadline` while the
/// cluster elects a leader or a member is unavailable. An existing bucket with the same
/// definition counts as created; any other refusal ends the attempt at once.
pub async fn ensure(
    channels: &[Channel],
    bucket: pb::Bucket,
    deadline: Instant,
) -> Result<(), ClientError> {
    let mut last = ClientError::Unreachable("no member given".to_owned());
    loop {
        for channel in channels {
            let request = pb::CreateBucketRequest {
                bucket: Some(bucket.clone()),
            };
            match BucketsClient::new(channel.clone()).create(request).await {
                Ok(_) => return Ok(()),
                Err(status) if retryable(status.code()) => last = ClientError::Status(status),
                Err(status) => return Err(ClientError::Status(status)),
            }
        }
        if Instant::now() + CREATE_RETRY_PAUSE >= deadline {
            return Err(last);
        }
        tokio::time::sleep(CREATE_RETRY_PAUSE).await;
    }
}

/// Refusals that a moment later may turn into success.
fn retryable(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
    )
}

/// A level of the given kind (count only matters for `LevelCount`).
pub fn level(kind: pb::LevelKind) -> Option<pb::Level> {
    Some(pb::Level {
        kind: kind as i32,
        count: 0,
    })
}
