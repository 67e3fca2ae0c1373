//! What the experiments beside the benchmark (`underlay-hook-bench`, `egress-bench`)
//! share: their rounds and measurement lengths on the command line, the three figures
//! they take (single-stream TCP, the 64-byte UDP rate, ping), and the samples of each
//! (variant, figure) kept round after round.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use overlay_tests::{Lab, traffic};

use crate::datapath::median;

/// The command line of an experiment: how many rounds, how long each measurement.
#[derive(clap::Parser, Clone, Debug)]
pub struct Rounds {
    /// Rounds; each round measures every variant once, in turn.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Seconds of each TCP measurement (after one left out).
    #[arg(long, default_value_t = 3)]
    pub tcp_seconds: u32,
    /// Seconds of each 64-byte UDP measurement.
    #[arg(long, default_value_t = 2)]
    pub udp_seconds: u32,
    /// Pings of each round-trip measurement, 10 ms apart.
    #[arg(long, default_value_t = 200)]
    pub pings: u32,
}

impl Rounds {
    /// The command line, with `about` (what the experiment compares) for `--help`.
    pub fn from_command_line(about: &'static str) -> Rounds {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Rounds::command().about(about).get_matches();
        Rounds::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// Where a figure is taken: iperf3's client (or ping) in `client`, its one-shot server
/// in `server`, at `ip`.
pub struct Ends<'a> {
    pub lab: &'a Lab,
    pub client: &'a str,
    pub server: &'a str,
    pub ip: Ipv4Addr,
}

impl Ends<'_> {
    /// Single-stream TCP in Gbit/s, the client sending (or, `reverse`, receiving:
    /// `iperf3 -R`), the first second left out.
    pub fn tcp(&self, r: &Rounds, port: u16, reverse: bool) -> anyhow::Result<f64> {
        let t = r.tcp_seconds.to_string();
        let mut extra = vec!["-t", t.as_str(), "-O", "1"];
        if reverse {
            extra.push("-R");
        }
        let report = traffic::iperf3(self.lab, self.server, self.ip, self.client, port, &extra)?;
        Ok(traffic::tcp_bits_per_second(&report)? / 1e9)
    }

    /// 64-byte UDP as fast as the client sends, in thousands of packets a second that
    /// arrive.
    pub fn small_udp(&self, r: &Rounds, port: u16) -> anyhow::Result<f64> {
        let t = r.udp_seconds.to_string();
        let report = traffic::iperf3(
            self.lab,
            self.server,
            self.ip,
            self.client,
            port,
            &["-u", "-l", "64", "-b", "0", "-t", &t],
        )?;
        Ok(traffic::udp_packets_per_second(&report)? / 1e3)
    }

    /// `ping -i 0.01`, the mean round trip in µs; more than 10% lost is an error.
    pub fn ping(&self, r: &Rounds) -> anyhow::Result<f64> {
        let result = traffic::ping(self.client, self.ip, r.pings, "0.01")?;
        if result.received * 10 < result.transmitted * 9 {
            bail!("ping lost {} of {}", result.transmitted - result.received, result.transmitted);
        }
        Ok(result.avg_rtt_ms.context("no ping reply")? * 1000.0)
    }
}

/// The figures of every (variant, metric), in the order they were made.
pub struct Samples<V, M> {
    slots: Vec<(V, M, Vec<f64>)>,
}

impl<V: Copy + PartialEq, M: Copy + PartialEq + std::fmt::Debug> Samples<V, M> {
    pub fn new(variants: &[V], metrics: &[M]) -> Self {
        let slots = variants.iter().flat_map(|v| metrics.iter().map(move |m| (*v, *m, Vec::new()))).collect();
        Samples { slots }
    }

    pub fn push(&mut self, variant: V, metric: M, value: f64) {
        if let Some((_, _, runs)) = self.slots.iter_mut().find(|(v, m, _)| *v == variant && *m == metric) {
            runs.push(value);
        }
    }

    /// NaN if `variant` and `metric` have no figure.
    pub fn median(&self, variant: V, metric: M) -> f64 {
        median(self.slots.iter().find(|(v, m, _)| *v == variant && *m == metric).map_or(&[][..], |(_, _, r)| r))
    }

    /// One line per (variant, metric): the median, its ratio to the median of each
    /// variant of `against` (heading, variant), and every run.
    pub fn table(
        &self,
        label: impl Fn(V) -> &'static str,
        unit: impl Fn(M) -> &'static str,
        against: &[(&str, V)],
    ) -> String {
        let mut out = format!("{:<22} {:<16} {:>9} {:<6}", "variant", "metric", "median", "unit");
        for (heading, _) in against {
            out += &format!(" {heading:>10}");
        }
        out += "  runs\n";
        for (variant, metric, runs) in &self.slots {
            let m = median(runs);
            out += &format!("{:<22} {:<16} {m:>9.2} {:<6}", label(*variant), format!("{metric:?}"), unit(*metric));
            for (_, base) in against {
                out += &format!(" {:>10.3}", m / self.median(*base, *metric));
            }
            let runs: Vec<String> = runs.iter().map(|v| format!("{v:.2}")).collect();
            out += &format!("  [{}]\n", runs.join(", "));
        }
        out
    }
}
