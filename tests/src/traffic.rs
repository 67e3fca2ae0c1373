//! Traffic between namespaces: ping and iperf3, bounded in count and time.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};

use crate::{cmd, lab::Lab};

/// Result of `ping -c N`.
#[derive(Clone, Copy, Debug)]
pub struct PingResult {
    pub transmitted: u32,
    pub received: u32,
    /// Average round-trip time in milliseconds (None when nothing came back).
    pub avg_rtt_ms: Option<f64>,
}

/// `ping -c count -i interval -W 1 dst` from `ns`: exactly `count` requests, each
/// waited for at most a second. Never fails on loss, only on errors.
pub fn ping(ns: &str, dst: Ipv4Addr, count: u32, interval: &str) -> anyhow::Result<PingResult> {
    let count_s = count.to_string();
    let dst_s = dst.to_string();
    let out = cmd::output_in(ns, &["ping", "-n", "-q", "-c", &count_s, "-i", interval, "-W", "1", &dst_s])?;
    parse_ping(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("ping output: {}", String::from_utf8_lossy(&out.stderr)))
}

fn parse_ping(out: &str) -> anyhow::Result<PingResult> {
    let stats = out.lines().find(|l| l.contains("packets transmitted")).context("no ping summary")?;
    let numbers: Vec<u32> = stats.split(',').filter_map(|part| part.split_whitespace().next()?.parse().ok()).collect();
    let (transmitted, received) = match numbers.as_slice() {
        [t, r, ..] => (*t, *r),
        _ => bail!("unexpected ping summary {stats:?}"),
    };
    let avg_rtt_ms = out
        .lines()
        .find(|l| l.starts_with("rtt") || l.starts_with("round-trip"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok());
    Ok(PingResult { transmitted, received, avg_rtt_ms })
}

/// A ping running in the background: `count` requests every `interval`, each waited
/// for at most a second; [`Flow::finish`] waits for the end and counts.
pub struct Flow {
    child: std::process::Child,
    what: String,
}

impl Flow {
    pub fn start(ns: &str, dst: Ipv4Addr, count: u32, interval: &str) -> anyhow::Result<Self> {
        Self::spawn(ns, dst, &["-c", &count.to_string(), "-i", interval])
    }

    /// Pings every `interval` for `duration` (whole seconds), however fast the machine
    /// sends them: the flow ends when it should, even on a loaded machine.
    pub fn during(ns: &str, dst: Ipv4Addr, duration: std::time::Duration, interval: &str) -> anyhow::Result<Self> {
        let seconds = duration.as_secs().max(1).to_string();
        Self::spawn(ns, dst, &["-w", &seconds, "-i", interval])
    }

    fn spawn(ns: &str, dst: Ipv4Addr, pacing: &[&str]) -> anyhow::Result<Self> {
        let dst_s = dst.to_string();
        let mut ping = vec!["ping", "-n", "-q"];
        ping.extend_from_slice(pacing);
        ping.extend_from_slice(&["-W", "1", &dst_s]);
        let args = cmd::in_ns(ns, &ping);
        let child = std::process::Command::new(args[0])
            .args(&args[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting `{}`", args.join(" ")))?;
        Ok(Flow { child, what: format!("ping {dst} from {ns}") })
    }

    pub fn finish(self) -> anyhow::Result<PingResult> {
        let out = self.child.wait_with_output()?;
        parse_ping(&String::from_utf8_lossy(&out.stdout)).with_context(|| {
            format!("{} ended ({}) without a summary: {}", self.what, out.status, String::from_utf8_lossy(&out.stderr))
        })
    }
}

/// Pings `dst` from `ns` every 20 ms until the first reply, for at most `limit`;
/// returns how long that took.
pub fn wait_reachable(ns: &str, dst: Ipv4Addr, limit: std::time::Duration) -> anyhow::Result<std::time::Duration> {
    let started = std::time::Instant::now();
    let deadline = limit.as_secs().max(1).to_string();
    let dst_s = dst.to_string();
    // -c 1 with -w: keep sending until one reply or the deadline.
    let out = cmd::output_in(ns, &["ping", "-n", "-q", "-c", "1", "-i", "0.02", "-w", &deadline, &dst_s])?;
    let result = parse_ping(&String::from_utf8_lossy(&out.stdout))?;
    if result.received == 0 {
        bail!("{dst} did not answer {ns} within {limit:?}");
    }
    Ok(started.elapsed())
}

/// Pings and fails unless every reply came back.
pub fn ping_ok(ns: &str, dst: Ipv4Addr, count: u32) -> anyhow::Result<PingResult> {
    let result = ping(ns, dst, count, "0.2")?;
    if result.received != count {
        bail!("ping {dst} from {ns}: {}/{} replies", result.received, result.transmitted);
    }
    Ok(result)
}

/// Runs an iperf3 client from `client_ns` against a one-shot server started in
/// `server_ns`, and returns iperf3's JSON report. `extra` are client options.
pub fn iperf3(
    lab: &Lab,
    server_ns: &str,
    server_ip: Ipv4Addr,
    client_ns: &str,
    port: u16,
    extra: &[&str],
) -> anyhow::Result<serde_json::Value> {
    let port_s = port.to_string();
    lab.spawn(server_ns, &["iperf3", "-s", "-1", "-p", &port_s])?;
    let ip = server_ip.to_string();
    let mut args = vec!["timeout", "60", "iperf3", "-c", &ip, "-p", &port_s, "-J"];
    args.extend_from_slice(extra);
    // The server needs a moment to listen; retry the connection a few times.
    let mut last_error = None;
    for _ in 0..20 {
        let out = cmd::output_in(client_ns, &args)?;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        match report.get("error").and_then(|e| e.as_str()) {
            Some(e) if e.contains("connect") => {
                last_error = Some(e.to_owned());
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Some(e) => bail!("iperf3 {} -> {ip}: {e}", client_ns),
            None if out.status.success() => return Ok(report),
            None => bail!("iperf3 failed: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    bail!("iperf3 could not connect to {ip}:{port}: {}", last_error.unwrap_or_default())
}

/// Received TCP throughput in bits per second from an iperf3 TCP report.
pub fn tcp_bits_per_second(report: &serde_json::Value) -> anyhow::Result<f64> {
    report["end"]["sum_received"]["bits_per_second"].as_f64().context("no sum_received in iperf3 report")
}

/// Packets per second that arrived, from an iperf3 UDP report.
pub fn udp_packets_per_second(report: &serde_json::Value) -> anyhow::Result<f64> {
    let sum = &report["end"]["sum"];
    let packets = sum["packets"].as_f64().context("no packets in iperf3 UDP report")?;
    let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
    let seconds = sum["seconds"].as_f64().filter(|s| *s > 0.0).context("no duration in report")?;
    Ok((packets - lost) / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summary() {
        let out = "--- 10.0.9.3 ping statistics ---\n3 packets transmitted, 2 received, 33.3333% packet loss, time 2003ms\nrtt min/avg/max/mdev = 0.051/0.062/0.080/0.012 ms\n";
        let r = parse_ping(out).unwrap();
        assert_eq!((r.transmitted, r.received), (3, 2));
        assert_eq!(r.avg_rtt_ms, Some(0.062));
        let lost = "3 packets transmitted, 0 received, 100% packet loss, time 2003ms\n";
        assert_eq!(parse_ping(lost).unwrap().avg_rtt_ms, None);
    }
}
