//! A raw AMQP 0-9-1 publisher, frames written by hand: it publishes what lapin's own
//! encoder cannot (headers nested 20,000 deep: encoding them recurses per level), as a
//! hostile or buggy producer would. Plain TCP, PLAIN login, one message, confirmed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn short(out: &mut Vec<u8>, s: &str) {
    out.push(u8::try_from(s.len()).expect("a short string"));
    out.extend_from_slice(s.as_bytes());
}

fn frame(w: &mut TcpStream, kind: u8, channel: u16, payload: &[u8]) {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&u32::try_from(payload.len()).expect("size").to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    w.write_all(&f).expect("write a frame");
}

fn method(w: &mut TcpStream, channel: u16, class: u16, id: u16, args: &[u8]) {
    let mut p = class.to_be_bytes().to_vec();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(args);
    frame(w, 1, channel, &p);
}

/// The next method frame (class, method, arguments); heartbeats are skipped.
fn expect(r: &mut TcpStream, class: u16, id: u16) -> Vec<u8> {
    loop {
        let mut head = [0u8; 7];
        r.read_exact(&mut head).expect("read a frame head");
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut payload = vec![0; size + 1];
        r.read_exact(&mut payload).expect("read a frame");
        payload.pop();
        if head[0] != 1 {
            continue;
        }
        let got = (
            u16::from_be_bytes([payload[0], payload[1]]),
            u16::from_be_bytes([payload[2], payload[3]]),
        );
        assert_eq!(got, (class, id), "the broker answered {payload:?}");
        return payload[4..].to_vec();
    }
}

/// Content header properties: headers `{"k": [[[...]]]}` with `depth` arrays, a
/// persistent delivery, `priority` and `message_id`.
pub fn nested_properties(depth: usize, priority: u8, message_id: &str) -> Vec<u8> {
    let mut array = vec![0u8, 0, 0, 0];
    for _ in 1..depth {
        let mut outer = (u32::try_from(array.len()).expect("len") + 1)
            .to_be_bytes()
            .to_vec();
        outer.push(b'A');
        outer.extend_from_slice(&array);
        array = outer;
    }
    let mut p = (1u16 << 13 | 1 << 12 | 1 << 11 | 1 << 7)
        .to_be_bytes()
        .to_vec();
    p.extend_from_slice(&(u32::try_from(array.len()).expect("len") + 3).to_be_bytes());
    p.extend_from_slice(&[1, b'k', b'A']);
    p.extend_from_slice(&array);
    p.extend_from_slice(&[2, priority]);
    short(&mut p, message_id);
    p
}

/// Publishes one message with these encoded `properties` to `queue` on the broker at
/// 127.0.0.1:5672 (guest/guest, vhost /), and waits for the broker's confirm.
pub fn publish(port: u16, queue: &str, properties: &[u8], body: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to RabbitMQ");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"AMQP\x00\x00\x09\x01")
        .expect("protocol header");
    expect(&mut s, 10, 10);
    let mut a = 0u32.to_be_bytes().to_vec();
    short(&mut a, "PLAIN");
    a.extend_from_slice(&12u32.to_be_bytes());
    a.extend_from_slice(b"\0guest\0guest");
    short(&mut a, "en_US");
    method(&mut s, 0, 10, 11, &a);
    let tune = expect(&mut s, 10, 30);
    let mut a = tune[..6].to_vec();
    a.extend_from_slice(&0u16.to_be_bytes());
    method(&mut s, 0, 10, 31, &a);
    let mut a = Vec::new();
    short(&mut a, "/");
    a.extend_from_slice(&[0, 0]);
    method(&mut s, 0, 10, 40, &a);
    expect(&mut s, 10, 41);
    method(&mut s, 1, 20, 10, &[0]);
    expect(&mut s, 20, 11);
    method(&mut s, 1, 85, 10, &[0]);
    expect(&mut s, 85, 11);
    let mut a = vec![0, 0, 0];
    short(&mut a, queue);
    a.push(0);
    method(&mut s, 1, 60, 40, &a);
    let mut h = 60u16.to_be_bytes().to_vec();
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&(body.len() as u64).to_be_bytes());
    h.extend_from_slice(properties);
    frame(&mut s, 2, 1, &h);
    frame(&mut s, 3, 1, body);
    expect(&mut s, 60, 80);
    let mut a = 200u16.to_be_bytes().to_vec();
    short(&mut a, "");
    a.extend_from_slice(&[0, 0, 0, 0]);
    method(&mut s, 0, 10, 50, &a);
    expect(&mut s, 10, 51);
}
