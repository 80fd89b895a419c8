//! `--print-config` of every role: the resolved config (file, flags and defaults) as TOML on
//! stdout, exit 0, nothing started. For the roles that read a file (proxy, bp server, bp
//! client), what is printed loads back through `--conf` into the same config: printed again,
//! it is the same text.

use std::time::Duration;

use crate::util::{netforge, with_timeout, write_temp, Proc};

const T: Duration = Duration::from_secs(120);
const EXIT: Duration = Duration::from_secs(10);

/// Runs netforge with `args` (and no `$PORT`), expecting exit 0; returns stdout.
fn printed(args: &[&str]) -> String {
    let mut cmd = netforge();
    cmd.args(args).env_remove("PORT");
    let (status, out, err) = Proc::spawn(cmd).finish(EXIT);
    assert!(status.success(), "{args:?}: {status:?} {err}");
    assert!(err.is_empty(), "{args:?}: {err}");
    out
}

/// Prints with `args`, then loads what was printed with `--conf` and prints again: the same
/// text. The flags given first must show in what is printed.
fn round_trip(role: &[&str], args: &[&str], tag: &str, shows: &[&str]) {
    let first = printed(&[role, &["--print-config"], args].concat());
    for s in shows {
        assert!(first.lines().any(|l| l == *s), "{role:?} {args:?}: no line {s:?} in\n{first}");
    }
    let file = write_temp(tag, &first);
    let again = printed(&[role, &["--print-config", "--conf", file.to_str().unwrap()]].concat());
    assert_eq!(again, first, "{role:?}: printed config does not load back the same");
    let _ = std::fs::remove_file(file);
}

#[test]
fn proxy_print_config_loads_back_the_same() {
    with_timeout(T, || {
        let conf = "threads = 3\nbalance = \"rr\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n\
                    [[backend]]\naddress = \"localhost:8001\"\n[[backend]]\naddress = \"127.0.0.1:8002\"\nweight = 5\n";
        let file = write_temp("lb.toml", conf);
        let path = file.to_str().unwrap();
        round_trip(
            &["proxy"],
            &["--conf", path, "--threads", "2", "--admin", ""],
            "lb-printed.toml",
            &["threads = 2", "balance = \"round_robin\"", "name = \"localhost:8001\"", "weight = 5"],
        );
        round_trip(
            &["proxy"],
            &["--lb", "least_conn", "127.0.0.1:8001"],
            "lb-quick.toml",
            &["balance = \"least_conn\""],
        );
        let _ = std::fs::remove_file(file);
    });
}

#[test]
fn bp_print_config_loads_back_the_same() {
    with_timeout(T, || {
        let file = write_temp("bp-server.toml", "read_size = \"4KiB\"\nprotocol = \"websocket\"\n");
        round_trip(
            &["bp", "server"],
            &["--conf", file.to_str().unwrap(), "--read-delay", "5ms", "--listen", "[::1]:0", "--reuse-port"],
            "bp-server-printed.toml",
            &["read_size = \"4KiB\"", "read_delay = \"5ms\"", "listen = \"[::1]:0\"", "reuse_port = true"],
        );
        round_trip(
            &["bp", "client"],
            &["--protocol", "ws", "--total", "7", "--duration", "0", "-i", "0", "--server", "localhost:9"],
            "bp-client-printed.toml",
            &["protocol = \"websocket\"", "total = 7", "duration = \"0\"", "server = \"localhost:9\""],
        );
        let _ = std::fs::remove_file(file);
    });
}

/// goon and serve have no file: what they print is the config they would run with, every
/// flag resolved (threads never 0), and nothing is dialed, bound or asked.
#[test]
fn goon_and_serve_print_their_resolved_config() {
    with_timeout(T, || {
        let out = printed(&["goon", "127.0.0.1", "9", "-c", "7", "--rate", "50", "--sndbuf", "8KiB", "--print-config"]);
        for line in
            ["target = \"127.0.0.1:9\"", "connections = 7", "rate = 50.0", "sndbuf = \"8KiB\"", "builtin = false"]
        {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        assert!(!out.contains("threads = 0"), "{out}");
        let out = printed(&["serve", "--listen", "127.0.0.1:0", "--mode", "echo", "-i", "250ms", "--print-config"]);
        for line in ["listen = \"127.0.0.1:0\"", "mode = \"echo\"", "interval = \"250ms\""] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        assert!(!out.contains("listening on"), "{out}");
        // Without --tls there are no protocols to accept: no alpn key at all.
        assert!(!out.contains("alpn"), "{out}");
        let out = printed(&["serve", "--listen", "127.0.0.1:0", "--tls", "--alpn", "h2,http/1.1", "--print-config"]);
        assert!(out.lines().any(|l| l == "alpn = [\"h2\", \"http/1.1\"]"), "{out}");
    });
}
