//! The staging queue's batches: `reprioritize` carries many mails in one staging
//! message, so that each mail crosses the broker as a message of its own only once
//! (main queue out, main queue back), as a bare consume-and-republish loop does.
//!
//! A batch is a message with the header `x-acaso-batch` (how many mails it holds) and a
//! body of records, one per mail, each the mail's AMQP properties in the protocol's own
//! encoding and its body, byte for byte, both length-prefixed:
//!
//! ```text
//! [u32 BE: n][n bytes: content header properties][u32 BE: m][m bytes: body]  ...
//! ```
//!
//! A staging message without that header is one mail, as the staging queue held them
//! before batches: a run of this version finishes an older run's work.

use anyhow::{Result, anyhow, bail};
use lapin::BasicProperties;
use lapin::protocol::basic::{gen_properties, parse_properties};
use lapin::types::{AMQPValue, FieldTable};

/// The header that marks a batch, and says how many mails it holds.
pub const H_BATCH: &str = "x-acaso-batch";
/// The header that says which run of `reprioritize` staged a batch.
pub const H_RUN: &str = "x-acaso-run";
/// The most mails a batch holds (what `reprioritize` writes); a batch that claims more
/// is unreadable, so that one message cannot become millions of mails in memory.
pub const MAX_MAILS: u32 = 250;
/// The largest properties a mail can have: the broker carries them in one content
/// header frame, at most 128 KiB.
const MAX_PROPERTIES: usize = 128 * 1024;
/// The deepest nesting of tables and arrays in a mail's headers that a batch may hold.
/// Reading, copying and dropping such values recurse, so a crafted batch nesting
/// thousands deep would overflow the stack; no real mail nests more than a few.
pub const MAX_NESTING: usize = 32;

/// A batch holds at most this many bytes, unless it is a single mail larger than that
/// (far below RabbitMQ's 128 MiB limit on a message).
pub const MAX_BYTES: usize = 4 << 20;

/// Mails being gathered into one staging message.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    mails: u32,
}

impl Batch {
    /// Adds one mail.
    pub fn push(&mut self, props: &BasicProperties, body: &[u8]) -> Result<()> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        let ctx = gen_properties(props)(std::mem::take(&mut self.buf).into())
            .map_err(|e| anyhow!("encoding a mail's properties for the staging queue: {e:?}"))?;
        self.buf = ctx.write;
        let n = self.buf.len() - start - 4;
        self.buf[start..start + 4].copy_from_slice(&len32(n)?);
        self.buf.extend_from_slice(&len32(body.len())?);
        self.buf.extend_from_slice(body);
        self.mails += 1;
        Ok(())
    }

    /// Mails gathered.
    pub fn mails(&self) -> u32 {
        self.mails
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.mails == 0
    }

    /// Whether a mail of `body` bytes (and its properties) still fits in it; anything
    /// fits in an empty batch.
    pub fn fits(&self, body: usize) -> bool {
        // Properties are at most a few KiB: counted generously.
        self.is_empty() || self.buf.len() + body + 64 * 1024 <= MAX_BYTES
    }

    /// The body to publish and the headers that mark it, `run` naming this run; leaves
    /// the batch empty.
    pub fn take(&mut self, run: &str) -> (Vec<u8>, FieldTable) {
        let mut headers = FieldTable::default();
        headers.insert(H_BATCH.into(), AMQPValue::LongUInt(self.mails));
        headers.insert(H_RUN.into(), AMQPValue::LongString(run.into()));
        self.mails = 0;
        (std::mem::take(&mut self.buf), headers)
    }
}

fn len32(n: usize) -> Result<[u8; 4]> {
    u32::try_from(n)
        .map(u32::to_be_bytes)
        .map_err(|_| anyhow!("a mail of {n} bytes is too large for a staging batch"))
}

/// Whether a staging message is a batch (else it is one mail).
pub fn is_batch(props: &BasicProperties) -> bool {
    props
        .headers()
        .as_ref()
        .is_some_and(|h| h.inner().contains_key(H_BATCH))
}

/// The run that staged a batch, if it says.
pub fn run_of(props: &BasicProperties) -> Option<String> {
    match props.headers().as_ref()?.inner().get(H_RUN)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

/// How many mails a batch says it holds.
fn announced(props: &BasicProperties) -> Option<u32> {
    match props.headers().as_ref()?.inner().get(H_BATCH)? {
        AMQPValue::LongUInt(n) => Some(*n),
        _ => None,
    }
}

/// The mails of a staging message: a batch's, or the message itself when it is not a
/// batch. A batch that cannot be read (cut short, holding other than what it announces,
/// more than [`MAX_MAILS`], properties over 128 KiB or nested over [`MAX_NESTING`]) is
/// an error, never a panic.
pub fn unpack(props: &BasicProperties, body: &[u8]) -> Result<Vec<(BasicProperties, Vec<u8>)>> {
    if !is_batch(props) {
        return Ok(vec![(props.clone(), body.to_vec())]);
    }
    let announced = announced(props)
        .filter(|n| *n <= MAX_MAILS)
        .ok_or_else(|| {
            anyhow!("the batch does not say how many mails (at most {MAX_MAILS}) it holds")
        })?;
    records(body, announced)
}

/// The `announced` records of a batch's body.
fn records(body: &[u8], announced: u32) -> Result<Vec<(BasicProperties, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if out.len() >= announced as usize {
            bail!("the batch holds more than the {announced} mail(s) it announces");
        }
        let (p, r) = field(rest, "properties")?;
        if p.len() > MAX_PROPERTIES {
            bail!(
                "mail {}: {} bytes of properties, over the {MAX_PROPERTIES} a message can carry",
                out.len() + 1,
                p.len()
            );
        }
        match nesting(p) {
            Some(d) if d <= MAX_NESTING => {}
            Some(d) => bail!(
                "mail {}: headers nested {d} deep, over the {MAX_NESTING} a batch may hold",
                out.len() + 1
            ),
            None => bail!("mail {}: unreadable properties", out.len() + 1),
        }
        let (left, props) = parse_properties(p)
            .map_err(|e| anyhow!("mail {}: unreadable properties: {e:?}", out.len() + 1))?;
        if !left.is_empty() {
            bail!(
                "mail {}: {} stray byte(s) after its properties",
                out.len() + 1,
                left.len()
            );
        }
        let (b, r) = field(r, "body")?;
        out.push((props, b.to_vec()));
        rest = r;
    }
    if out.len() != announced as usize {
        bail!(
            "the batch holds {} mail(s), not the {announced} it announces",
            out.len()
        );
    }
    Ok(out)
}

/// How deep tables and arrays nest in the headers of encoded properties, read without
/// recursion (`None`: not well formed). The type codes are RabbitMQ's, as lapin reads
/// them.
fn nesting(p: &[u8]) -> Option<usize> {
    let flags = u16::from_be_bytes(*p.first_chunk::<2>()?);
    let mut i = 2usize;
    // content-type and content-encoding, short strings, come before the headers.
    for bit in [15, 14] {
        if flags & (1 << bit) != 0 {
            i = i.checked_add(1 + usize::from(*p.get(i)?))?;
        }
    }
    if flags & (1 << 13) == 0 {
        return Some(0);
    }
    let len32 = |i: usize| -> Option<usize> {
        let b = p.get(i..i.checked_add(4)?)?;
        usize::try_from(u32::from_be_bytes(b.try_into().ok()?)).ok()
    };
    // Open containers: (where it ends, whether it is a table: its entries have keys).
    let mut open: Vec<(usize, bool)> = Vec::new();
    let mut deepest = 0;
    let mut enter = |i: &mut usize, table: bool, open: &mut Vec<(usize, bool)>| {
        let end = i.checked_add(4)?.checked_add(len32(*i)?)?;
        open.push((end, table));
        *i += 4;
        deepest = deepest.max(open.len());
        Some(())
    };
    enter(&mut i, true, &mut open)?;
    while let Some(&(end, table)) = open.last() {
        if i >= end {
            if i > end {
                return None;
            }
            open.pop();
            continue;
        }
        if table {
            i = i.checked_add(1 + usize::from(*p.get(i)?))?;
        }
        let t = *p.get(i)?;
        i += 1;
        match t {
            b't' | b'b' | b'B' => i += 1,
            b's' | b'U' | b'u' => i += 2,
            b'I' | b'i' | b'f' => i += 4,
            b'D' => i += 5,
            b'l' | b'L' | b'd' | b'T' => i += 8,
            b'V' => {}
            b'S' | b'x' => i = i.checked_add(4)?.checked_add(len32(i)?)?,
            b'A' => enter(&mut i, false, &mut open)?,
            b'F' => enter(&mut i, true, &mut open)?,
            _ => return None,
        }
    }
    Some(deepest)
}

/// A length-prefixed field at the start of `b`, and what follows it.
fn field<'a>(b: &'a [u8], what: &str) -> Result<(&'a [u8], &'a [u8])> {
    let (len, rest) = b
        .split_first_chunk::<4>()
        .ok_or_else(|| anyhow!("the batch ends inside the length of a mail's {what}"))?;
    let n = usize::try_from(u32::from_be_bytes(*len))?;
    if rest.len() < n {
        bail!(
            "the batch ends inside a mail's {what} ({n} bytes announced, {} left)",
            rest.len()
        );
    }
    Ok(rest.split_at(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{LongString, ShortString};
    use proptest::prelude::*;

    fn props(id: &str, prio: u8, ts: u64, extra: Option<(&str, &str)>) -> BasicProperties {
        let mut p = BasicProperties::default()
            .with_message_id(ShortString::from(id))
            .with_priority(prio)
            .with_timestamp(ts)
            .with_content_type("application/json".into());
        if let Some((k, v)) = extra {
            let mut h = FieldTable::default();
            h.insert(k.into(), AMQPValue::LongString(LongString::from(v)));
            p = p.with_headers(h);
        }
        p
    }

    #[test]
    fn a_batch_gives_back_every_mail_as_it_was() {
        let mails = vec![
            (props("a", 7, 1, None), b"{\"x\":1}".to_vec()),
            (props("", 0, 0, Some(("x-acaso-attempts", "2"))), Vec::new()),
            (BasicProperties::default(), vec![0, 255, 10, 13]),
        ];
        let mut b = Batch::default();
        for (p, body) in &mails {
            b.push(p, body).expect("push");
        }
        assert_eq!(b.mails(), 3);
        assert!(b.fits(1000) && !b.fits(MAX_BYTES));
        let (body, headers) = b.take("run-1");
        assert!(b.is_empty());
        let staged = BasicProperties::default().with_headers(headers);
        assert!(is_batch(&staged));
        assert_eq!(run_of(&staged).as_deref(), Some("run-1"));
        assert_eq!(unpack(&staged, &body).expect("unpack"), mails);
    }

    #[test]
    fn a_message_that_is_not_a_batch_is_one_mail() {
        let p = props("legacy", 4, 9, None);
        assert!(!is_batch(&p));
        assert_eq!(
            unpack(&p, b"{}").expect("unpack"),
            vec![(p.clone(), b"{}".to_vec())]
        );
    }

    #[test]
    fn a_truncated_batch_is_an_error() {
        let mut b = Batch::default();
        b.push(&props("a", 1, 1, None), b"hello").expect("push");
        let (body, headers) = b.take("r");
        let staged = BasicProperties::default().with_headers(headers);
        for cut in 1..body.len() {
            let e = unpack(&staged, &body[..cut]).expect_err("truncated");
            assert!(
                e.to_string().contains("mail") || e.to_string().contains("batch"),
                "{e}"
            );
        }
    }

    /// A batch of one mail whose properties nest `depth` arrays in a header, as
    /// nobody but an attacker would write.
    fn nested(depth: usize) -> Vec<u8> {
        let mut props = Vec::new();
        props.extend_from_slice(&0x2000u16.to_be_bytes());
        let table = 2 + 5 * depth;
        props.extend_from_slice(&u32::try_from(table).expect("len").to_be_bytes());
        props.extend_from_slice(&[1, b'k']);
        for i in 0..depth {
            props.push(b'A');
            let inner = 5 * (depth - 1 - i);
            props.extend_from_slice(&u32::try_from(inner).expect("len").to_be_bytes());
        }
        let mut b = Vec::new();
        b.extend_from_slice(&u32::try_from(props.len()).expect("len").to_be_bytes());
        b.extend_from_slice(&props);
        b.extend_from_slice(&0u32.to_be_bytes());
        b
    }

    fn marked(n: u32) -> BasicProperties {
        let mut h = FieldTable::default();
        h.insert(H_BATCH.into(), AMQPValue::LongUInt(n));
        BasicProperties::default().with_headers(h)
    }

    #[test]
    fn headers_nested_too_deep_are_refused_unread_not_a_stack_overflow() {
        // What a frame can carry nests ~26,000 deep: reading it (or copying, or
        // dropping it) would overflow the stack. Refused before it is read.
        // `nested(n)`: the headers table, then n arrays.
        for depth in [MAX_NESTING - 1, MAX_NESTING, 26_000] {
            let got = unpack(&marked(1), &nested(depth));
            if depth < MAX_NESTING {
                assert_eq!(got.expect("read").len(), 1, "{depth}");
            } else {
                let e = got.expect_err("too deep");
                assert!(e.to_string().contains("nested"), "{depth}: {e}");
            }
        }
    }

    #[test]
    fn every_header_type_the_broker_delivers_is_measured_and_read_back() {
        // Each type lapin reads from the broker (a short string is not one: RabbitMQ
        // has no code for it), at the top of the headers and inside an array.
        use lapin::types::{ByteArray, DecimalValue, FieldArray};
        let mut inner = FieldTable::default();
        inner.insert("n".into(), AMQPValue::LongLongInt(-1));
        let values = vec![
            AMQPValue::Boolean(true),
            AMQPValue::ShortShortInt(-3),
            AMQPValue::ShortShortUInt(3),
            AMQPValue::ShortInt(-300),
            AMQPValue::ShortUInt(300),
            AMQPValue::LongInt(-70_000),
            AMQPValue::LongUInt(70_000),
            AMQPValue::LongLongInt(-5_000_000_000),
            AMQPValue::Float(1.5),
            AMQPValue::Double(2.5),
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 314,
            }),
            AMQPValue::LongString("é and more".into()),
            AMQPValue::Timestamp(1_764_000_000),
            AMQPValue::ByteArray(ByteArray::from(vec![0u8, 255, 7])),
            AMQPValue::Void,
            AMQPValue::FieldTable(inner),
            AMQPValue::FieldArray(FieldArray::default()),
        ];
        let mut h = FieldTable::default();
        for (i, v) in values.iter().enumerate() {
            h.insert(format!("k{i}").as_str().into(), v.clone());
        }
        h.insert("all".into(), AMQPValue::FieldArray(values.into()));
        let p = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_headers(h)
            .with_message_id("m-1".into())
            .with_timestamp(7);
        let mut b = Batch::default();
        b.push(&p, b"{}").expect("push");
        let (body, headers) = b.take("r");
        let (props, _) = field(&body, "properties").expect("field");
        // The headers, the array "all", the table and the empty array inside it.
        assert_eq!(nesting(props), Some(3));
        assert_eq!(nesting(&[0, 0]), Some(0), "no headers");
        let staged = BasicProperties::default().with_headers(headers);
        assert_eq!(
            unpack(&staged, &body).expect("read"),
            vec![(p, b"{}".to_vec())]
        );
    }

    #[test]
    fn a_batch_must_hold_what_it_announces_and_no_more_than_the_most() {
        let mut b = Batch::default();
        for i in 0..3u8 {
            b.push(&BasicProperties::default(), &[i]).expect("push");
        }
        let (body, _) = b.take("r");
        assert_eq!(unpack(&marked(3), &body).expect("read").len(), 3);
        for n in [2, 4, 0] {
            let e = unpack(&marked(n), &body).expect_err("miscounted");
            assert!(e.to_string().contains("announces"), "{n}: {e}");
        }
        let e = unpack(&marked(MAX_MAILS + 1), &body).expect_err("too many");
        assert!(e.to_string().contains("how many"), "{e}");
        // Cut at a record boundary: one mail fewer than announced.
        let first = 4 + 2 + 4 + 1;
        let e = unpack(&marked(3), &body[..2 * first]).expect_err("cut");
        assert!(e.to_string().contains("not the 3"), "{e}");
    }

    proptest! {
        #[test]
        fn any_mails_round_trip(
            mails in proptest::collection::vec(
                ("[a-z0-9-]{0,20}", any::<u8>(), any::<u64>(), proptest::option::of("[ -~]{0,30}"),
                 proptest::collection::vec(any::<u8>(), 0..300)),
                0..20)
        ) {
            let mails: Vec<(BasicProperties, Vec<u8>)> = mails
                .into_iter()
                .map(|(id, prio, ts, h, body)| (props(&id, prio, ts, h.as_deref().map(|v| ("x-k", v))), body))
                .collect();
            let mut b = Batch::default();
            for (p, body) in &mails {
                b.push(p, body).expect("push");
            }
            let (body, headers) = b.take("r");
            let staged = BasicProperties::default().with_headers(headers);
            prop_assert_eq!(unpack(&staged, &body).expect("unpack"), mails);
        }

        #[test]
        fn any_properties_are_measured_without_panic(p in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = nesting(&p);
        }

        #[test]
        fn any_bytes_are_read_or_refused_without_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let (_, headers) = Batch::default().take("r");
            let staged = BasicProperties::default().with_headers(headers);
            let _ = unpack(&staged, &body);
        }
    }
}
