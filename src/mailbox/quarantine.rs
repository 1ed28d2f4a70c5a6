//! Messages lapin cannot read: a message whose content header fails to parse (headers
//! nested over amq-protocol-types' limit of 100 levels, see `patches/README.md`) makes
//! lapin close the whole connection, before acaso-mail sees the message, and the broker
//! hands the same message back at the head of the queue to the next run, forever.
//!
//! So the head of the queue is screened on a connection of its own, spoken frame by
//! frame (AMQP 0-9-1, PLAIN login, TLS as lapin does it): each message is fetched
//! unacked with its header kept as raw bytes; one whose properties do not parse is
//! parked as `malformed`, with its body and its other properties intact and its
//! headers replaced by the parking ones (a copy with the original headers would stop
//! every reader of the parking queue in turn). The copy is confirmed before the
//! original is acked; the messages that read well go back to their place when the
//! connection closes.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::protocol::basic::{gen_properties, parse_properties};
use lapin::tcp::{AMQPUriTcpExt, HandshakeError, TcpStream};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;

use super::message::parking_headers;
use crate::config::Config;
use crate::park::ParkReason;

/// Set when lapin reported a frame it could not parse: the run screens the queue
/// before it ends, so that the next one gets past the message.
static UNREADABLE_SEEN: AtomicBool = AtomicBool::new(false);

/// Notes a broker failure; one that is lapin failing to parse a frame is remembered.
pub fn note_failure(why: &str) {
    if why.contains("failed to parse") {
        UNREADABLE_SEEN.store(true, Ordering::Relaxed);
    }
}

/// Whether this run met a message lapin could not parse.
pub fn unreadable_seen() -> bool {
    UNREADABLE_SEEN.load(Ordering::Relaxed)
}

/// The largest frame asked for (RabbitMQ's default).
const FRAME_MAX: u32 = 128 * 1024;

/// Why a malformed message was parked.
const DETAIL: &str = "its AMQP properties cannot be read (headers nested over 100 levels deep, or not well formed); its headers were dropped, its body and other properties kept";

/// Screens the first `window` messages of the main queue on the blocking pool: those
/// whose properties cannot be read are parked. Returns how many were parked.
pub async fn screen_queue(cfg: &Config, window: u32) -> Result<u32> {
    let cfg = cfg.clone();
    let topo = super::topology::Topology::new(&cfg.queue);
    let now = cfg.fixed_now.unwrap_or_else(Utc::now);
    tokio::task::spawn_blocking(move || screen(&cfg, topo.main(), &topo.parking(), window, now))
        .await
        .map_err(|e| anyhow!("screening the queue: {e}"))?
}

/// Screens the first `window` messages of `queue`: those whose properties cannot be
/// read are moved to `parking`. Returns how many were parked. Blocking.
fn screen(
    cfg: &Config,
    queue: &str,
    parking: &str,
    window: u32,
    now: DateTime<Utc>,
) -> Result<u32> {
    let mut c = Conn::open(cfg).context("screening the queue for unreadable messages")?;
    // RabbitMQ confirms a message that no queue takes: without its parking queue, a
    // parked copy would vanish and the original be acked. Screen only where it exists.
    c.parking_exists(parking)?;
    let mut parked = 0;
    for _ in 0..window {
        let Some((tag, props, body)) = c.get(queue)? else {
            break;
        };
        if matches!(parse_properties(props.as_slice()), Ok((&[], _))) {
            continue; // it reads well: it goes back to its place at the close
        }
        let copy = encode(&parked_properties(&props, now))?;
        c.publish(parking, &copy, &body)?;
        c.method(1, 60, 80, &[&tag.to_be_bytes()[..], &[0]].concat())?;
        parked += 1;
    }
    c.close()?;
    Ok(parked)
}

/// The properties of the parked copy: the original's without its headers (when the
/// rest reads), plus the parking headers.
fn parked_properties(raw: &[u8], now: DateTime<Utc>) -> BasicProperties {
    let base = without_headers(raw)
        .and_then(|p| match parse_properties(p.as_slice()) {
            Ok((&[], props)) => Some(props),
            _ => None,
        })
        .unwrap_or_default()
        .with_delivery_mode(2); // persistent, whatever the original said
    let mut headers = FieldTable::default();
    for (k, v) in parking_headers(ParkReason::Malformed, DETAIL, now) {
        headers.insert(k.into(), v);
    }
    base.with_headers(headers)
}

/// Encoded properties with the headers table cut out, found by its length without
/// reading it (`None`: not well formed).
fn without_headers(p: &[u8]) -> Option<Vec<u8>> {
    let flags = u16::from_be_bytes(*p.first_chunk::<2>()?);
    if flags & 1 != 0 {
        return None; // a second flags word: not basic's
    }
    let mut i = 2usize;
    for bit in [15, 14] {
        if flags & (1 << bit) != 0 {
            i = i.checked_add(1 + usize::from(*p.get(i)?))?;
        }
    }
    if flags & (1 << 13) == 0 {
        return Some(p.to_vec());
    }
    let len = u32::from_be_bytes(p.get(i..i.checked_add(4)?)?.try_into().ok()?);
    let end = i.checked_add(4)?.checked_add(usize::try_from(len).ok()?)?;
    let mut out = (flags & !(1 << 13)).to_be_bytes().to_vec();
    out.extend_from_slice(p.get(2..i)?);
    out.extend_from_slice(p.get(end..)?);
    Some(out)
}

fn encode(props: &BasicProperties) -> Result<Vec<u8>> {
    let ctx = gen_properties(props)(Vec::new().into())
        .map_err(|e| anyhow!("encoding a parked message's properties: {e:?}"))?;
    Ok(ctx.write)
}

fn short(out: &mut Vec<u8>, s: &str) -> Result<()> {
    out.push(u8::try_from(s.len()).map_err(|_| anyhow!("over 255 bytes: {s:.40}..."))?);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn be_u16(b: &[u8], at: usize) -> Result<u16> {
    Ok(u16::from_be_bytes(
        *b.get(at..)
            .and_then(|s| s.first_chunk::<2>())
            .ok_or_else(|| anyhow!("a frame cut short"))?,
    ))
}

fn be_u64(b: &[u8], at: usize) -> Result<u64> {
    Ok(u64::from_be_bytes(
        *b.get(at..)
            .and_then(|s| s.first_chunk::<8>())
            .ok_or_else(|| anyhow!("a frame cut short"))?,
    ))
}

/// A fetched message: its delivery tag, raw properties and body.
type Fetched = (u64, Vec<u8>, Vec<u8>);

/// A frame: its type and payload.
struct Frame {
    kind: u8,
    payload: Vec<u8>,
}

/// One connection with one channel (1), in confirm mode.
struct Conn {
    s: TcpStream,
    frame_max: u32,
}

impl Conn {
    fn open(cfg: &Config) -> Result<Self> {
        let uri: AMQPUri = cfg
            .amqp_url
            .expose()
            .parse()
            .map_err(|e| anyhow!("the AMQP URL: {e}"))?;
        let tls = lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: cfg.wire.amqp_ca.as_ref().map(|ca| ca.pem.clone()),
        };
        let mut attempt = uri.connect_with_config(tls.as_ref());
        let s = loop {
            match attempt {
                Ok(s) => break s,
                Err(HandshakeError::WouldBlock(mut mid)) => {
                    // lapin's streams are non-blocking; this one blocks (with timeouts).
                    mid.get_mut().set_nonblocking(false)?;
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(e).context("connecting"),
            }
        };
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(cfg.timeout))?;
        s.set_write_timeout(Some(cfg.timeout))?;
        let mut c = Conn {
            s,
            frame_max: FRAME_MAX,
        };
        c.s.write_all(b"AMQP\x00\x00\x09\x01")?;
        c.expect(0, 10, 10)?;
        let login = format!(
            "\0{}\0{}",
            uri.authority.userinfo.username, uri.authority.userinfo.password
        );
        let mut a = 0u32.to_be_bytes().to_vec();
        short(&mut a, "PLAIN")?;
        a.extend_from_slice(&u32::try_from(login.len())?.to_be_bytes());
        a.extend_from_slice(login.as_bytes());
        short(&mut a, "en_US")?;
        c.method(0, 10, 11, &a)?;
        let tune = c.expect(0, 10, 30)?;
        let channel_max = be_u16(&tune, 0)?;
        let server_max = u32::from_be_bytes(
            *tune
                .get(2..6)
                .and_then(|s| s.first_chunk::<4>())
                .ok_or_else(|| anyhow!("a Tune cut short"))?,
        );
        if server_max != 0 {
            c.frame_max = server_max.min(FRAME_MAX);
        }
        let mut a = channel_max.to_be_bytes().to_vec();
        a.extend_from_slice(&c.frame_max.to_be_bytes());
        a.extend_from_slice(&0u16.to_be_bytes());
        c.method(0, 10, 31, &a)?;
        let mut a = Vec::new();
        short(&mut a, &uri.vhost)?;
        a.extend_from_slice(&[0, 0]);
        c.method(0, 10, 40, &a)?;
        c.expect(0, 10, 41)?;
        c.method(1, 20, 10, &[0])?;
        c.expect(1, 20, 11)?;
        c.method(1, 85, 10, &[0])?;
        c.expect(1, 85, 11)?;
        Ok(c)
    }

    fn frame(&mut self, kind: u8, channel: u16, payload: &[u8]) -> Result<()> {
        let mut f = Vec::with_capacity(payload.len() + 8);
        f.push(kind);
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&u32::try_from(payload.len())?.to_be_bytes());
        f.extend_from_slice(payload);
        f.push(0xCE);
        self.s.write_all(&f)?;
        Ok(())
    }

    fn method(&mut self, channel: u16, class: u16, id: u16, args: &[u8]) -> Result<()> {
        let mut p = class.to_be_bytes().to_vec();
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(args);
        self.frame(1, channel, &p)
    }

    fn read(&mut self) -> Result<Frame> {
        loop {
            let mut head = [0u8; 7];
            self.s.read_exact(&mut head)?;
            let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
            if size > self.frame_max.max(FRAME_MAX) {
                bail!(
                    "a frame of {size} bytes, over the {} agreed",
                    self.frame_max
                );
            }
            let mut payload = vec![0; usize::try_from(size)? + 1];
            self.s.read_exact(&mut payload)?;
            if payload.pop() != Some(0xCE) {
                bail!("a frame without its end marker");
            }
            if head[0] != 8 {
                return Ok(Frame {
                    kind: head[0],
                    payload,
                });
            }
        }
    }

    /// The next frame, which must be method `class.id`; its arguments.
    fn expect(&mut self, _channel: u16, class: u16, id: u16) -> Result<Vec<u8>> {
        let f = self.read()?;
        let got = (be_u16(&f.payload, 0)?, be_u16(&f.payload, 2)?);
        if f.kind != 1 || got != (class, id) {
            let text = String::from_utf8_lossy(f.payload.get(7..).unwrap_or_default());
            bail!(
                "RabbitMQ answered {}.{} where {class}.{id} was expected: {text:.200}",
                got.0,
                got.1
            );
        }
        Ok(f.payload.get(4..).unwrap_or_default().to_vec())
    }

    /// `basic.get` without auto-ack: the delivery tag, raw properties and body.
    fn get(&mut self, queue: &str) -> Result<Option<Fetched>> {
        let mut a = vec![0, 0];
        short(&mut a, queue)?;
        a.push(0);
        self.method(1, 60, 70, &a)?;
        let f = self.read()?;
        match (f.kind, be_u16(&f.payload, 0)?, be_u16(&f.payload, 2)?) {
            (1, 60, 72) => return Ok(None),
            (1, 60, 71) => {}
            (_, c, m) => bail!("RabbitMQ answered {c}.{m} to basic.get on {queue}"),
        }
        let tag = be_u64(&f.payload, 4)?;
        let h = self.read()?;
        if h.kind != 2 {
            bail!(
                "a content header was expected, not a frame of type {}",
                h.kind
            );
        }
        let size = be_u64(&h.payload, 4)?;
        let props = h.payload.get(12..).unwrap_or_default().to_vec();
        let mut body = Vec::new();
        while (body.len() as u64) < size {
            let b = self.read()?;
            if b.kind != 3 {
                bail!("a body frame was expected, not a frame of type {}", b.kind);
            }
            body.extend_from_slice(&b.payload);
        }
        Ok(Some((tag, props, body)))
    }

    /// `queue.declare` passive: fails (the broker closes the channel) when `queue` does
    /// not exist, and then nothing is fetched or parked.
    fn parking_exists(&mut self, queue: &str) -> Result<()> {
        let mut a = vec![0, 0];
        short(&mut a, queue)?;
        a.push(1); // passive
        a.extend_from_slice(&[0, 0, 0, 0]); // no arguments
        self.method(1, 50, 10, &a)?;
        self.expect(1, 50, 11)
            .with_context(|| format!("the parking queue {queue} must exist before a message is parked there (acaso-mail publish -n 0 creates the queues)"))?;
        Ok(())
    }

    /// Publishes to `queue` (default exchange), mandatory, and waits for the broker's
    /// confirm: a copy no queue took comes back as `basic.return` first, an error here.
    fn publish(&mut self, queue: &str, props: &[u8], body: &[u8]) -> Result<()> {
        let mut a = vec![0, 0, 0];
        short(&mut a, queue)?;
        a.push(1); // mandatory
        self.method(1, 60, 40, &a)?;
        let mut h = 60u16.to_be_bytes().to_vec();
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&(body.len() as u64).to_be_bytes());
        h.extend_from_slice(props);
        self.frame(2, 1, &h)?;
        let chunk = usize::try_from(self.frame_max)?.saturating_sub(8);
        for part in body.chunks(chunk.max(1)) {
            self.frame(3, 1, part)?;
        }
        self.expect(1, 60, 80)
            .context("RabbitMQ did not confirm the parked copy")?;
        Ok(())
    }

    fn close(mut self) -> Result<()> {
        let mut a = 200u16.to_be_bytes().to_vec();
        short(&mut a, "")?;
        a.extend_from_slice(&[0, 0, 0, 0]);
        self.method(0, 10, 50, &a)?;
        self.expect(0, 10, 51)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_cut_out_by_their_length() {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(FieldTable::default())
            .with_message_id("m-1".into())
            .with_priority(4);
        let raw = encode(&props).expect("gen");
        let cut = without_headers(&raw).expect("well formed");
        let (rest, back) = parse_properties(cut.as_slice()).expect("parses");
        assert!(rest.is_empty());
        assert_eq!(back.headers(), &None);
        assert_eq!(back.message_id().as_ref().map(|m| m.as_str()), Some("m-1"));
        assert_eq!(back.priority(), &Some(4));
        let parked = parked_properties(&raw, DateTime::<Utc>::UNIX_EPOCH);
        assert_eq!(parked.priority(), &Some(4));
        assert!(without_headers(&raw[..raw.len() - 3]).is_some_and(|p| p.len() < raw.len()));
        assert_eq!(without_headers(&[0x20, 0, 0, 0]), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_cut_or_refused_never_a_panic(p in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = without_headers(&p);
            let _ = parked_properties(&p, DateTime::<Utc>::UNIX_EPOCH);
        }
    }
}
