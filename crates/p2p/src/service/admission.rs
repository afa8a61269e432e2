//! The gate every inbound sync and relay request passes before it is decoded.

use super::*;

/// What [`Service::admit_inbound`] decided about an inbound request.
pub(super) enum Admission {
    Admitted,
    /// Oversized: no answer.
    Dropped,
    /// Over the peer's budget: answered with an error.
    RateLimited,
}

impl Service {
    /// The gate in front of every inbound request, before it is decoded: the frame within the
    /// protocol's size limit (else the peer is banned), and the peer within its request budget,
    /// one per peer shared by sync and relay (else penalised). `protocol` names the request in
    /// the penalty's reason.
    pub(super) fn admit_inbound(
        &mut self,
        peer: PeerId,
        frame: &Frame,
        protocol: &str,
    ) -> Admission {
        Metrics::add(&self.metrics.sync_bytes_in, frame.bytes.len());
        if frame.oversized {
            Metrics::inc(&self.metrics.invalid_messages);
            self.penalise(
                peer,
                BAN_THRESHOLD,
                &format!("oversized {protocol} request"),
            );
            return Admission::Dropped;
        }
        let (rate, burst) = (self.config.requests_per_second, self.config.request_burst);
        if let Some(state) = self.peers.get_mut(&peer)
            && !state.rate.allow(rate, burst)
        {
            Metrics::inc(&self.metrics.invalid_messages);
            self.penalise(
                peer,
                REQUEST_FLOOD_PENALTY,
                &format!("{protocol} request over the rate limit"),
            );
            return Admission::RateLimited;
        }
        Admission::Admitted
    }
}
