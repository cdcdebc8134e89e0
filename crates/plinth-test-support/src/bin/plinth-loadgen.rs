//! A closed-loop HTTP/1.1 load generator for the benchmarks (`bench/features.py`): N clients,
//! each on its own keep-alive connection and thread, POST request bodies in turn for a fixed time
//! and record every latency. Prints one JSON object: requests, errors (and errors by status, 0 for
//! a failed connection), requests/s and latency percentiles in microseconds. A Python client would
//! measure itself at these latencies.
//!
//! ```text
//! plinth-loadgen --url http://127.0.0.1:5000/get-online-features --bodies bodies.jsonl \
//!     [--clients 8] [--seconds 10] [--warmup-seconds 2]
//! ```
//! `--bodies`: a file with one request body per line; client i starts at line i and cycles.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

struct Args {
    host: String,
    path: String,
    bodies: Vec<String>,
    clients: usize,
    seconds: f64,
    warmup: f64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut url = None;
    let mut bodies = None;
    let (mut clients, mut seconds, mut warmup) = (1usize, 10.0f64, 2.0f64);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => url = Some(value),
            "--bodies" => bodies = Some(value),
            "--clients" => clients = value.parse().context("--clients")?,
            "--seconds" => seconds = value.parse().context("--seconds")?,
            "--warmup-seconds" => warmup = value.parse().context("--warmup-seconds")?,
            other => bail!("unknown flag {other}"),
        }
    }
    let url = url.context("--url is required")?;
    let rest = url.strip_prefix("http://").context("--url must be http://host:port/path")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let text = std::fs::read_to_string(bodies.context("--bodies is required")?).context("cannot read --bodies")?;
    let bodies: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    if bodies.is_empty() || clients == 0 {
        bail!("need at least one body and one client");
    }
    Ok(Args { host: host.to_owned(), path, bodies, clients, seconds, warmup })
}

/// One keep-alive connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(host: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(host).with_context(|| format!("cannot connect to {host}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// Sends one request and reads the whole answer; returns its status.
    fn call(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.writer.write_all(request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line.split_whitespace().nth(1).context("no status line")?.parse()?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("connection closed in the headers");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if name == "content-length" {
                    length = Some(value.trim().parse::<usize>()?);
                } else if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                }
            }
        }
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)?;
                let mut chunk = vec![0u8; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut body = vec![0u8; length.context("no Content-Length")?];
            self.reader.read_exact(&mut body)?;
        }
        Ok(status)
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        args.bodies
            .iter()
            .map(|b| {
                format!(
                    "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                    args.path,
                    args.host,
                    b.len()
                )
                .into_bytes()
            })
            .collect(),
    );
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for client in 0..args.clients {
        let (requests, measuring, stop, host) = (requests.clone(), measuring.clone(), stop.clone(), args.host.clone());
        handles.push(std::thread::spawn(move || -> anyhow::Result<(Vec<u64>, BTreeMap<u16, u64>)> {
            let mut conn = Conn::open(&host)?;
            let mut latencies = Vec::with_capacity(1 << 16);
            // Failed answers by status; 0: the connection failed (it is reopened).
            let mut errors: BTreeMap<u16, u64> = BTreeMap::new();
            let mut i = client;
            while !stop.load(Ordering::Relaxed) {
                let request = &requests[i % requests.len()];
                i += 1;
                let start = Instant::now();
                let status = match conn.call(request) {
                    Ok(s) => s,
                    Err(_) => {
                        conn = Conn::open(&host)?;
                        0
                    }
                };
                let nanos = start.elapsed().as_nanos() as u64;
                if measuring.load(Ordering::Relaxed) {
                    if status == 200 {
                        latencies.push(nanos);
                    } else {
                        *errors.entry(status).or_default() += 1;
                    }
                }
            }
            Ok((latencies, errors))
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
    for h in handles {
        let (lat, err) = h.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        all.extend(lat);
        for (status, n) in err {
            *by_status.entry(status).or_default() += n;
        }
    }
    let errors: u64 = by_status.values().sum();
    let by_status: Vec<String> = by_status.iter().map(|(s, n)| format!("\"{s}\": {n}")).collect();
    all.sort_unstable();
    println!(
        "{{\"clients\": {}, \"requests\": {}, \"errors\": {}, \"errors_by_status\": {{{}}}, \"seconds\": {:.3}, \"rps\": {:.1}, \"p50_us\": {:.1}, \"p90_us\": {:.1}, \"p99_us\": {:.1}, \"p999_us\": {:.1}, \"max_us\": {:.1}}}",
        args.clients,
        all.len(),
        errors,
        by_status.join(", "),
        elapsed,
        all.len() as f64 / elapsed,
        percentile(&all, 50.0),
        percentile(&all, 90.0),
        percentile(&all, 99.0),
        percentile(&all, 99.9),
        percentile(&all, 100.0),
    );
    Ok(())
}
