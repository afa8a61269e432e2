//! A JSON-RPC middleware that runs the calls of one batch concurrently.
//!
//! jsonrpsee runs a batch's calls one after another. A batch of `sendrawtransaction` calls then
//! checks one signature at a time; run together, their prechecks use every core and the chain
//! task receives them back to back. Answers keep the batch's order. Concurrency per batch is
//! bounded by the batch length limit (`RpcConfig::max_batch_len`).

use std::future::Future;
use std::pin::Pin;

use jsonrpsee::MethodResponse;
use jsonrpsee::core::middleware::{Batch, BatchEntry, Notification, RpcServiceT};
use jsonrpsee::core::server::BatchResponseBuilder;
use jsonrpsee::types::Request;

/// See the module docs.
#[derive(Clone, Debug)]
pub struct ConcurrentBatch<S> {
    pub inner: S,
    /// Largest response body, as configured on the server.
    pub max_response_bytes: usize,
}

type Answer<'a> = Pin<Box<dyn Future<Output = Option<MethodResponse>> + Send + 'a>>;

impl<S> RpcServiceT for ConcurrentBatch<S>
where
    S: crate::RpcService,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.call(request)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.notification(n)
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let service = self.inner.clone();
        let limit = self.max_response_bytes;
        async move {
            let answers: Vec<Answer<'a>> = batch
                .into_iter()
                .map(|entry| -> Answer<'a> {
                    let service = service.clone();
                    match entry {
                        Ok(BatchEntry::Call(req)) => {
                            Box::pin(async move { Some(service.call(req).await) })
                        }
                        Ok(BatchEntry::Notification(n)) => Box::pin(async move {
                            service.notification(n).await;
                            None
                        }),
                        Err(err) => {
                            let (err, id) = err.into_parts();
                            Box::pin(async move { Some(MethodResponse::error(id, err)) })
                        }
                    }
                })
                .collect();
            let results = futures::future::join_all(answers).await;
            let got_notification = results.iter().any(Option::is_none);
            let mut builder = BatchResponseBuilder::new_with_limit(limit);
            for rp in results.into_iter().flatten() {
                if let Err(too_big) = builder.append(rp) {
                    return too_big;
                }
            }
            // As jsonrpsee answers: notifications only -> no answer; an empty batch -> invalid.
            if builder.is_empty() && got_notification {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(builder.finish())
            }
        }
    }
}
