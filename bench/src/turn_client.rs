//! The bench's TURN client on relay-ctl's codec (stun/message.rs, turn/attrs.rs, turn/auth.rs):
//! Allocate (401, then with long-term credentials), CreatePermission and ChannelBind, over UDP
//! from a given local address, so the generator's frames then come from the allocation's
//! client 5-tuple. Each request is retried a few times (UDP), each answer checked.
use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use relay_ctl::{
    stun::message::{
        ATTR_ERROR_CODE, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, Builder, Class, Message,
        decode_address, parse,
    },
    turn::{
        attrs::{
            ATTR_CHANNEL_NUMBER, ATTR_LIFETIME, ATTR_REQUESTED_TRANSPORT, ATTR_XOR_PEER_ADDRESS,
            ATTR_XOR_RELAYED_ADDRESS, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
            METHOD_CREATE_PERMISSION, TRANSPORT_UDP, channel_attr,
        },
        auth::long_term_key,
    },
};

struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    next_txid: u32,
    buf: Vec<u8>,
}

/// An attribute for a request: (type, value) or an XOR address.
enum Attr {
    Raw(u16, Vec<u8>),
    Xor(u16, SocketAddr),
}

impl Client {
    fn txid(&mut self) -> [u8; 12] {
        // Unique per request in this run; the bench needs no unpredictability.
        self.next_txid += 1;
        let mut t = [0u8; 12];
        t[..4].copy_from_slice(&std::process::id().to_be_bytes());
        t[8..].copy_from_slice(&self.next_txid.to_be_bytes());
        t
    }

    /// Send a request (with MESSAGE-INTEGRITY when `auth` is given) and return the answer's
    /// bytes (success or error) with its transaction id checked.
    fn request(
        &mut self,
        method: u16,
        attrs: &[Attr],
        auth: Option<(&str, &str, &str, &[u8; 16])>,
    ) -> Result<Vec<u8>> {
        let txid = self.txid();
        let mut b = Builder::new(method, Class::Request, txid);
        for a in attrs {
            match a {
                Attr::Raw(t, v) => b.attr(*t, v),
                Attr::Xor(t, s) => b.xor_address(*t, *s),
            };
        }
        if let Some((user, realm, nonce, key)) = auth {
            b.attr(ATTR_USERNAME, user.as_bytes())
                .attr(ATTR_REALM, realm.as_bytes())
                .attr(ATTR_NONCE, nonce.as_bytes())
                .integrity(key, false);
        }
        let req = b.finish(true);
        for _ in 0..4 {
            self.sock.send_to(&req, self.server)?;
            loop {
                match self.sock.recv_from(&mut self.buf) {
                    Ok((n, from)) if from == self.server => {
                        let m = match parse(&self.buf[..n]) {
                            Ok(m) => m,
                            Err(_) => continue,
                        };
                        if m.txid == txid && m.method == method {
                            return Ok(self.buf[..n].to_vec());
                        }
                    }
                    Ok(_) => continue,
                    // Timed out: send again.
                    Err(_) => break,
                }
            }
        }
        bail!(
            "no answer from {} to method {method:#x} after 4 tries",
            self.server
        )
    }
}

fn error_code(m: &Message) -> Option<u16> {
    let v = m.attr(ATTR_ERROR_CODE)?;
    (v.len() >= 4).then(|| u16::from(v[2] & 0x7) * 100 + u16::from(v[3]))
}

fn expect_success(bytes: &[u8], what: &str) -> Result<()> {
    let m = parse(bytes).map_err(|e| anyhow::anyhow!("{what}: answer unparsable: {e:?}"))?;
    ensure!(
        m.class == Class::Success,
        "{what} refused: error {:?}",
        error_code(&m)
    );
    Ok(())
}

/// Allocate from `local`, permit `peer`, bind `channel` to it; return the relayed address.
/// `cred` is (user, realm, password).
pub fn bind_channel(
    local: SocketAddr,
    server: SocketAddr,
    peer: SocketAddr,
    channel: u16,
    cred: (&str, &str, &str),
) -> Result<SocketAddr> {
    let sock = UdpSocket::bind(local).with_context(|| format!("bind {local}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut c = Client {
        sock,
        server,
        next_txid: 0,
        buf: vec![0; 2048],
    };
    let transport = || Attr::Raw(ATTR_REQUESTED_TRANSPORT, vec![TRANSPORT_UDP, 0, 0, 0]);
    // 1. Without credentials: 401 with the realm and a nonce.
    let first = c.request(METHOD_ALLOCATE, &[transport()], None)?;
    let m = parse(&first).map_err(|e| anyhow::anyhow!("Allocate answer: {e:?}"))?;
    ensure!(
        m.class == Class::Error && error_code(&m) == Some(401),
        "Allocate without credentials: expected 401, got {:?} {:?}",
        m.class,
        error_code(&m)
    );
    let nonce = String::from_utf8(m.attr(ATTR_NONCE).context("401 without NONCE")?.to_vec())
        .context("NONCE not UTF-8")?;
    let realm = String::from_utf8(m.attr(ATTR_REALM).context("401 without REALM")?.to_vec())
        .context("REALM not UTF-8")?;
    ensure!(realm == cred.1, "server realm {realm}, expected {}", cred.1);
    let key = long_term_key(cred.0, cred.1, cred.2);
    let auth = Some((cred.0, cred.1, nonce.as_str(), &key));
    // 2. With MESSAGE-INTEGRITY.
    let ok = c.request(
        METHOD_ALLOCATE,
        // An hour: no refresh needed during the measurement.
        &[
            transport(),
            Attr::Raw(ATTR_LIFETIME, 3600u32.to_be_bytes().to_vec()),
        ],
        auth,
    )?;
    expect_success(&ok, "Allocate")?;
    let m = parse(&ok).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let relayed = m
        .attr(ATTR_XOR_RELAYED_ADDRESS)
        .and_then(|v| decode_address(v, Some(&m.txid)))
        .context("Allocate success without XOR-RELAYED-ADDRESS")?;
    // 3. CreatePermission and ChannelBind for the peer.
    let ok = c.request(
        METHOD_CREATE_PERMISSION,
        &[Attr::Xor(ATTR_XOR_PEER_ADDRESS, peer)],
        auth,
    )?;
    expect_success(&ok, "CreatePermission")?;
    let ok = c.request(
        METHOD_CHANNEL_BIND,
        &[
            Attr::Raw(ATTR_CHANNEL_NUMBER, channel_attr(channel).to_vec()),
            Attr::Xor(ATTR_XOR_PEER_ADDRESS, peer),
        ],
        auth,
    )?;
    expect_success(&ok, "ChannelBind")?;
    Ok(relayed)
}
