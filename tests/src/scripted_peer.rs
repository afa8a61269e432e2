//! A scripted peer: a real libp2p swarm that speaks Cairn's gossip (gossipsub, anonymous, the
//! node's topics and message ids) and answers the sync protocol from a script, for tests of
//! hostile peers against real `cairnd` processes. It validates nothing and publishes whatever
//! bytes the test gives it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use cairn_p2p::codec::{Frame, SYNC_PROTOCOL, SyncCodec};
use cairn_p2p::config::{DEFAULT_MAX_SYNC_REQUEST_SIZE, DEFAULT_MAX_SYNC_RESPONSE_SIZE};
use cairn_p2p::{NetworkConfig, Status, SyncRequest, SyncResponse};
use cairn_primitives::BlockHash;
use cairn_primitives::encoding::{decode_with_limit, encode};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, identity, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

/// How the peer answers a sync request (`None`: no answer, the requester times out).
pub type Script = Box<dyn FnMut(SyncRequest) -> Option<SyncResponse> + Send>;

#[derive(NetworkBehaviour)]
struct PeerBehaviour {
    identify: identify::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
}

enum Command {
    Dial(Multiaddr, oneshot::Sender<Result<()>>),
    Publish(Vec<u8>, oneshot::Sender<Result<()>>),
    Connected(oneshot::Sender<Vec<PeerId>>),
}

/// A running scripted peer (its swarm runs on its own runtime; dropping it stops it).
pub struct ScriptedPeer {
    runtime: tokio::runtime::Runtime,
    commands: mpsc::Sender<Command>,
    pub peer_id: PeerId,
}

/// A status for the chain of `genesis` at height 0 (a fresh node).
pub fn genesis_status(genesis: BlockHash) -> Status {
    let mut work = [0u8; 32];
    work[31] = 2;
    Status {
        genesis,
        best_height: 0,
        best_hash: genesis,
        total_work: work,
    }
}

impl ScriptedPeer {
    /// Starts a peer for the chain of `genesis` that answers sync requests with `script`.
    pub fn start(genesis: BlockHash, script: Script) -> Result<ScriptedPeer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let key = identity::Keypair::generate_ed25519();
        let peer_id = key.public().to_peer_id();
        let config = NetworkConfig::new(genesis);
        let block_topic = IdentTopic::new(config.block_topic());
        let tx_topic = IdentTopic::new(config.tx_topic());
        let gossip_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(200))
            .validation_mode(ValidationMode::Anonymous)
            .message_id_fn(|m: &gossipsub::Message| cairn_p2p::behaviour::message_id(&m.data))
            .max_transmit_size(8 * 1024 * 1024)
            .build()
            .map_err(|e| anyhow!("gossipsub config: {e}"))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)
                .map_err(|e| anyhow!("gossipsub: {e}"))?;
        gossipsub.subscribe(&block_topic)?;
        gossipsub.subscribe(&tx_topic)?;
        let behaviour = PeerBehaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                cairn_p2p::behaviour::IDENTIFY_PROTOCOL_VERSION.to_string(),
                key.public(),
            )),
            gossipsub,
            sync: request_response::Behaviour::with_codec(
                SyncCodec {
                    max_request_size: DEFAULT_MAX_SYNC_REQUEST_SIZE,
                    max_response_size: DEFAULT_MAX_SYNC_RESPONSE_SIZE,
                },
                [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
        };
        let swarm = runtime.block_on(async {
            Ok::<_, anyhow::Error>(
                libp2p::SwarmBuilder::with_existing_identity(key)
                    .with_tokio()
                    .with_tcp(
                        tcp::Config::default().nodelay(true),
                        noise::Config::new,
                        yamux::Config::default,
                    )?
                    .with_behaviour(|_| behaviour)?
                    .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
                    .build(),
            )
        })?;
        let (tx, rx) = mpsc::channel(16);
        runtime.spawn(run(swarm, rx, block_topic, script));
        Ok(ScriptedPeer {
            runtime,
            commands: tx,
            peer_id,
        })
    }

    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        self.runtime.block_on(async {
            let (tx, rx) = oneshot::channel();
            self.commands
                .send(make(tx))
                .await
                .map_err(|_| anyhow!("scripted peer stopped"))?;
            rx.await.context("scripted peer stopped")
        })
    }

    /// Dials `addr` (a multiaddr string).
    pub fn dial(&self, addr: &str) -> Result<()> {
        let addr: Multiaddr = addr.parse().context("multiaddr")?;
        self.ask(|r| Command::Dial(addr, r))?
    }

    /// Peers connected now.
    pub fn connected(&self) -> Result<Vec<PeerId>> {
        self.ask(Command::Connected)
    }

    /// Publishes `payload` on the block topic once; fails if no peer takes it.
    pub fn publish_block_bytes(&self, payload: Vec<u8>) -> Result<()> {
        self.ask(|r| Command::Publish(payload, r))?
    }

    /// Publishes on the block topic, retrying while the mesh forms, until `timeout`.
    pub fn publish_block_bytes_when_ready(
        &self,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.publish_block_bytes(payload.clone()) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => bail!("publish never succeeded: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

async fn run(
    mut swarm: Swarm<PeerBehaviour>,
    mut commands: mpsc::Receiver<Command>,
    block_topic: IdentTopic,
    mut script: Script,
) {
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Dial(addr, reply)) => {
                    let _ = reply.send(swarm.dial(addr).map_err(|e| anyhow!("dial: {e}")));
                }
                Some(Command::Publish(payload, reply)) => {
                    let r = swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(block_topic.clone(), payload)
                        .map(|_| ())
                        .map_err(|e| anyhow!("publish: {e}"));
                    let _ = reply.send(r);
                }
                Some(Command::Connected(reply)) => {
                    let _ = reply.send(swarm.connected_peers().copied().collect());
                }
            },
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(PeerBehaviourEvent::Sync(
                    request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    },
                )) = event
                {
                    let Ok(request) =
                        decode_with_limit::<SyncRequest>(&request.bytes, DEFAULT_MAX_SYNC_REQUEST_SIZE)
                    else {
                        continue;
                    };
                    if let Some(response) = script(request) {
                        let _ = swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, Frame::new(encode(&response)));
                    }
                }
            }
        }
    }
}
