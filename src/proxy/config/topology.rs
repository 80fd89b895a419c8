//! `[[backend]]`, `[groups.NAME]` and `[[listener]]` → the validated groups and listeners:
//! backends gathered into groups in order of first appearance, hostnames resolved once, every
//! duplicate and dangling reference refused with the key path of the entry at fault.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::defaults::*;
use super::file::{BackendFile, GroupFile, ListenerFile};
use super::types::*;
use super::validate::{congestion_key, Cx};
use crate::conffile::ConfigError;
use crate::config::Resolver;
use crate::net::tune::Congestion;
use crate::proxy::lb::Balance;

/// A TOML key: bare when it can be, else quoted.
pub(super) fn bare_or_quoted(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// `[[backend]]` entries gathered into groups (in order of first appearance), with the
/// `[groups.NAME]` tables applied; `balance` and `congestion` are the global defaults.
pub(super) fn validate_backends(
    cx: &Cx<'_>,
    backends: Vec<BackendFile>,
    tables: BTreeMap<String, GroupFile>,
    balance: Balance,
    congestion: Option<Congestion>,
    resolve: Resolver<'_>,
) -> Result<Vec<GroupConfig>, ConfigError> {
    if backends.is_empty() {
        return Err(cx.err("backend", "no [[backend]] table (add one with address = \"host:port\")"));
    }
    let mut groups: Vec<GroupConfig> = Vec::new();
    // Per group, the `backend[i]` index of each of its backends, for messages.
    let mut origin: Vec<Vec<usize>> = Vec::new();
    // The duplicate checks look up, not scan: a file of many backends loads in linear time.
    let mut group_of: HashMap<String, usize> = HashMap::new();
    let mut seen: Vec<(HashMap<SocketAddr, usize>, HashMap<String, usize>)> = Vec::new();
    for (i, b) in backends.into_iter().enumerate() {
        let key = |k: &str| format!("backend[{i}].{k}");
        let group = b.group.unwrap_or_else(|| DEFAULT_GROUP.to_string());
        if group.trim().is_empty() {
            return Err(cx.err(key("group"), "empty group name (omit the key for \"default\")"));
        }
        let g = match group_of.get(&group) {
            Some(&g) => g,
            None => {
                groups.push(GroupConfig { name: group.clone(), balance, backends: Vec::new(), congestion });
                origin.push(Vec::new());
                seen.push(Default::default());
                group_of.insert(group.clone(), groups.len() - 1);
                groups.len() - 1
            }
        };

        let text = b.address.authority();
        let address = b.address.resolve(resolve).map_err(|e| cx.err(key("address"), e))?;
        if address.port() == 0 {
            return Err(cx.err(key("address"), format!("{text:?} has port 0, which cannot be connected to")));
        }
        if let Some(j) = seen[g].0.get(&as_dialed(address)) {
            let msg = format!(
                "duplicates backend[{j}] in group {group:?} ({address}); remove one, or put them in different groups"
            );
            return Err(cx.err(key("address"), msg));
        }

        let name = b.name.unwrap_or(text);
        if name.trim().is_empty() {
            return Err(cx.err(key("name"), "empty name (omit the key to use the address)"));
        }
        if let Some(j) = seen[g].1.get(&name) {
            let msg = format!("name {name:?} duplicates backend[{j}] in group {group:?} (names must differ)");
            return Err(cx.err(key("name"), msg));
        }

        let weight = b.weight.unwrap_or(DEFAULT_WEIGHT);
        if weight > MAX_WEIGHT {
            let msg = format!("{weight} is above the maximum {MAX_WEIGHT} (weights are relative; scale them down)");
            return Err(cx.err(key("weight"), msg));
        }

        let state = b.state.unwrap_or(DEFAULT_STATE);
        seen[g].0.insert(as_dialed(address), i);
        seen[g].1.insert(name.clone(), i);
        groups[g].backends.push(BackendConfig { name, address, weight, backup: b.backup.unwrap_or(false), state });
        origin[g].push(i);
    }
    for (g, group) in groups.iter().enumerate() {
        if group.backends.iter().all(|b| b.weight == 0) {
            let msg = format!(
                "every backend in group {:?} has weight 0, so none can be picked (give at least one a weight >= 1)",
                group.name
            );
            return Err(cx.err(format!("backend[{}].weight", origin[g][0]), msg));
        }
    }

    for (name, table) in tables {
        let gkey = format!("groups.{}", bare_or_quoted(&name));
        let Some(group) = groups.iter_mut().find(|x| x.name == name) else {
            let msg =
                format!("no backend uses group {name:?} (set group = {name:?} on a backend, or remove the table)");
            return Err(cx.err(gkey, msg));
        };
        if let Some(b) = table.balance {
            group.balance = b;
        }
        group.congestion = congestion_key(cx, &format!("{gkey}.congestion"), table.congestion, congestion)?;
    }
    Ok(groups)
}

/// The global `max_connections`, and whether the file set it (unset, it is this machine's
/// default from its open-file limit).
#[derive(Clone, Copy)]
pub(super) struct GlobalCap {
    pub(super) value: usize,
    pub(super) set: bool,
}

/// `[[listener]]` entries; `groups` are the validated backend groups.
pub(super) fn validate_listeners(
    cx: &Cx<'_>,
    entries: Vec<ListenerFile>,
    groups: &[GroupConfig],
    cap: GlobalCap,
    congestion: Option<Congestion>,
    admin: Option<SocketAddr>,
    resolve: Resolver<'_>,
) -> Result<Vec<ListenerConfig>, ConfigError> {
    if entries.is_empty() {
        return Err(cx.err("listener", "no [[listener]] table (add one with address = \"127.0.0.1:4000\")"));
    }
    let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(entries.len());
    for (i, l) in entries.into_iter().enumerate() {
        let key = |k: &str| format!("listener[{i}].{k}");

        let name = l.name.unwrap_or_else(|| format!("{DEFAULT_LISTENER_NAME_PREFIX}{i}"));
        if name.trim().is_empty() {
            return Err(cx.err(key("name"), "empty name (omit the key for the default)"));
        }
        if let Some(j) = listeners.iter().position(|x| x.name == name) {
            return Err(cx.err(key("name"), format!("name {name:?} duplicates listener[{j}] (names must differ)")));
        }

        let address = l.address.resolve(resolve).map_err(|e| cx.err(key("address"), e))?;
        // Port 0 asks the kernel for a free port: two of them never collide.
        if address.port() != 0 {
            if let Some(j) = listeners.iter().position(|x| canonical(x.address) == canonical(address)) {
                let msg = format!("{address} duplicates listener[{j}] (each listener needs its own address)");
                return Err(cx.err(key("address"), msg));
            }
            if admin == Some(address) {
                let msg = format!("{address} is also the admin address (move one of them)");
                return Err(cx.err(key("address"), msg));
            }
        }

        let group = l.group.unwrap_or_else(|| DEFAULT_GROUP.to_string());
        let Some(g) = groups.iter().position(|x| x.name == group) else {
            let known: Vec<String> = groups.iter().map(|g| format!("{:?}", g.name)).collect();
            let msg = format!("no backend is in group {group:?} (groups with backends: {})", known.join(", "));
            return Err(cx.err(key("group"), msg));
        };

        let GlobalCap { value: max_connections, set: global_set } = cap;
        let max = l.max_connections.unwrap_or(max_connections);
        if max == 0 {
            return Err(cx.err(key("max_connections"), "must be >= 1 (omit it to use the global cap)"));
        }
        let max = if max <= max_connections {
            max
        } else if global_set {
            let msg = format!(
                "{max} is above the global max_connections {max_connections}, which would cap it anyway (lower it, or raise the global one)"
            );
            return Err(cx.err(key("max_connections"), msg));
        } else {
            // The global cap is this machine's default, from its open-file limit: the same file
            // must load on a machine with a lower limit.
            let msg = format!(
                "{max} is above the global cap {max_connections} this machine's open-file limit gives (max_connections unset): capped at {max_connections}"
            );
            log::warn!("{}", cx.err(key("max_connections"), msg));
            max_connections
        };

        let congestion = congestion_key(cx, &key("congestion"), l.congestion, congestion)?;
        listeners.push(ListenerConfig { name, address, group: g, max_connections: max, congestion });
    }
    if let Some((i, path)) = forward_loop(&listeners, groups) {
        return Err(cx.err(format!("listener[{i}].address"), path));
    }
    Ok(listeners)
}

/// Whether a connect to `to` reaches a listener bound at `at`: the same address, or a
/// wildcard listener's port on loopback or on the wildcard address. Both are taken as the
/// kernel takes them ([`as_dialed`]).
pub(super) fn reaches(to: SocketAddr, at: SocketAddr) -> bool {
    let (to, at) = (as_dialed(to), canonical(at));
    at.port() != 0
        && to.port() == at.port()
        && (to.ip() == at.ip() || (at.ip().is_unspecified() && to.ip().is_loopback()))
}

/// An IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]:80`) as the IPv4 one it is.
pub(super) fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// Where a connect to `a` goes: [`canonical`], and the unspecified address as the kernel
/// dials it, loopback of its family (`0.0.0.0:80` is `127.0.0.1:80`, `[::]:80` is `[::1]:80`).
pub(super) fn as_dialed(a: SocketAddr) -> SocketAddr {
    let a = canonical(a);
    match a.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port())
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), a.port())
        }
        _ => a,
    }
}

/// The first listener whose traffic comes back to it through the proxy's own listeners (a
/// backend that is a listener's address), with the path as words: one client would then open
/// sessions until `max_connections` is full.
fn forward_loop(listeners: &[ListenerConfig], groups: &[GroupConfig]) -> Option<(usize, String)> {
    // next[i]: the listeners a backend of listener i's group reaches, with that backend.
    let next: Vec<Vec<(usize, &BackendConfig)>> = listeners
        .iter()
        .map(|l| {
            let backends = &groups[l.group].backends;
            let hops = backends.iter().flat_map(|b| {
                listeners
                    .iter()
                    .enumerate()
                    .filter(move |(_, m)| reaches(b.address, m.address))
                    .map(move |(j, _)| (j, b))
            });
            hops.collect()
        })
        .collect();
    for start in 0..listeners.len() {
        // Depth-first from `start`, each listener visited once; the path as (listener, backend).
        let mut seen = vec![false; listeners.len()];
        let mut stack: Vec<(usize, Vec<(usize, &BackendConfig)>)> = vec![(start, Vec::new())];
        while let Some((at, path)) = stack.pop() {
            for &(to, b) in &next[at] {
                let mut p = path.clone();
                p.push((at, b));
                if to == start {
                    let hops: Vec<String> = p
                        .iter()
                        .map(|(l, b)| {
                            let l = &listeners[*l];
                            format!(
                                "{} ({}) forwards to backend {:?} of group {:?}",
                                l.name, l.address, b.name, groups[l.group].name
                            )
                        })
                        .collect();
                    return Some((
                        start,
                        format!(
                            "{}, which is this listener again: a forwarding loop",
                            hops.join(", which is listener ")
                        ),
                    ));
                }
                if !seen[to] {
                    seen[to] = true;
                    stack.push((to, p));
                }
            }
        }
    }
    None
}
