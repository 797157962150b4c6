//! `mdp-recv`'s arguments turned into a checked plan, in one function
//! ([`RecvPlan::from_args`]): the interfaces resolved, the directory
//! checked writable, the node name bounded, the key read, and the state
//! machine's limits set. Nothing is received here.

use super::Args;
use crate::OutputArgs;
use mdp_net::recv::RecvOptions;
use mdp_proto::{NodeId, ReceiverConfig};
use std::net::SocketAddr;
use std::time::Duration;

/// A checked receiver: everything [`super::run`] needs, and nothing it
/// must still check.
#[derive(Debug)]
pub struct RecvPlan {
    /// The driver's settings (interfaces, directory, state machine).
    pub opts: RecvOptions,
    /// This receiver's node name.
    pub name: String,
    /// The group, for the log.
    pub group: SocketAddr,
    /// The interfaces as given, for the log.
    pub interfaces: Vec<String>,
    /// `--exec`: the hook after each complete push.
    pub exec: Option<String>,
    /// `--exec-file`: the hook after each placed file.
    pub exec_file: Option<String>,
    /// `--exec-timeout`.
    pub exec_timeout: Duration,
    /// `--metrics`: where to serve Prometheus metrics.
    pub metrics: Option<std::net::SocketAddr>,
    /// Output settings.
    pub out: OutputArgs,
}

impl RecvPlan {
    /// Checks and resolves `args`; every usage error of `mdp-recv` after
    /// clap's comes from here.
    pub fn from_args(args: &Args) -> anyhow::Result<RecvPlan> {
        let mut endpoints = args.net.endpoints()?;
        let mut endpoint = endpoints.remove(0);
        endpoint.unicast = args.unicast;
        let Some(dir) = args.dir.clone() else {
            anyhow::bail!("--dir DIR is required: the directory to place received files in");
        };
        mdp_net::recv::check_dir(&dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot write to --dir {}: {e}{}",
                dir.display(),
                mdp_net::sys::io_fix(&e)
            )
        })?;
        let name = args.name.clone().unwrap_or_else(mdp_net::recv::host_name);
        if name.is_empty() || name.len() > mdp_proto::limits::MAX_NAME_LEN {
            anyhow::bail!(
                "--node-id must be 1 to {} bytes long (got {} bytes)",
                mdp_proto::limits::MAX_NAME_LEN,
                name.len()
            );
        }
        let mut config =
            ReceiverConfig::new(NodeId(mdp_net::random_u64()), &name, mdp_net::random_u64());
        config.idle_timeout = args.idle_timeout;
        config.auth = args.net.auth()?;
        config.trust = crate::identity::read_trust(&args.trust)?;
        config.insecure = args.insecure;
        config.secrets = Some(mdp_proto::crypto::SecretSource::new(
            mdp_net::random_secret(),
        ));
        if let Some(path) = &args.identity_file {
            config.identity = Some(crate::identity::read_identity(path)?);
        }
        config.max_push_bytes = args.max_push_size;
        config.max_file_bytes = args.max_file_size;
        config.max_files = args.max_files;
        config.max_path_depth = args.max_path_depth;
        config.max_path_len = args.max_path_len;
        config.buffer_bytes = args.buffer.max(1) << 20;
        let opts = RecvOptions {
            endpoint,
            also: endpoints,
            config,
            dir,
            once: args.once,
            timeout: args.timeout,
            socket_buffer: args.socket_buffer.clamp(1, 1024) << 20,
            keep_partial: args.keep_partial,
            durable: !args.no_fsync,
            mode_mask: args.mode_mask,
            file_group: file_group(args.file_group.as_deref())?,
            keep_owners: !args.no_owners && mdp_net::sys::euid() == 0,
            keep_versions: args.keep_versions as usize,
            relay: relay(args)?,
            relay_tree: if args.relay_tree {
                Some(mdp_net::relay::RelayOptions {
                    endpoints: vec![endpoint],
                    destinations: Vec::new(),
                    config: relay_config(args)?,
                })
            } else {
                None
            },
        };
        Ok(RecvPlan {
            opts,
            name,
            group: args.net.group,
            interfaces: args.net.interface.clone(),
            exec: args.exec.clone(),
            exec_file: args.exec_file.clone(),
            exec_timeout: args.exec_timeout,
            metrics: args.metrics,
            out: args.out.clone(),
        })
    }
}

/// `--relay-group`'s settings: the relay's endpoints and its sender's.
fn relay(args: &Args) -> anyhow::Result<Option<mdp_net::relay::RelayOptions>> {
    let Some(group) = args.relay_group else {
        return Ok(None);
    };
    if group == args.net.group {
        anyhow::bail!(
            "--relay-group {group} is the group this receiver takes pushes from: give the relay's network a group (or port) of its own"
        );
    }
    let net = crate::NetArgs {
        group,
        interface: args.relay_interface.clone(),
        ttl: args.relay_ttl,
        dscp: args.net.dscp,
        key_file: None,
    };
    let endpoints = net
        .endpoints()
        .map_err(|e| anyhow::anyhow!("--relay-interface: {e}"))?;
    Ok(Some(mdp_net::relay::RelayOptions {
        endpoints,
        destinations: Vec::new(),
        config: relay_config(args)?,
    }))
}

/// The relay's sender's settings (`--relay-*`).
fn relay_config(args: &Args) -> anyhow::Result<mdp_proto::SenderConfig> {
    let mut config = mdp_proto::SenderConfig::new(mdp_proto::SessionId(0));
    config.expected_receivers = args.relay_receivers;
    config.wait = args.relay_wait;
    config.timeout = args.relay_timeout;
    // Adaptive down to 100 kbit/s, so that no receiver is dropped as too
    // slow: the network behind the relay sets its pace.
    config.rate = mdp_proto::RateMode::Adaptive {
        min_bps: 100_000,
        max_bps: args.relay_max_rate.unwrap_or(mdp_proto::cc::MAX_BPS),
        start_bps: mdp_proto::cc::START_BPS.min(args.relay_max_rate.unwrap_or(u64::MAX)),
    };
    // The relay's network takes the same shared key as this one, if any.
    config.auth = args.net.auth()?;
    Ok(config)
}

/// `--file-group`'s id: a number as it is, a name looked up.
fn file_group(name: Option<&str>) -> anyhow::Result<Option<u32>> {
    let Some(name) = name else { return Ok(None) };
    match mdp_net::sys::group_id(name) {
        Ok(Some(gid)) => Ok(Some(gid)),
        Ok(None) => anyhow::bail!(
            "--file-group {name}: no such group (`getent group {name}` finds none): give an existing group's name or number"
        ),
        Err(e) => anyhow::bail!("--file-group {name}: cannot look the group up: {e}"),
    }
}
