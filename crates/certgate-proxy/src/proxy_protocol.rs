//! PROXY protocol v2 headers (HAProxy `doc/proxy-protocol.txt`), as sent by a TCP tunnel to its
//! target. Pure: facts in, bytes out.

use std::net::SocketAddr;

/// What the header carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No header.
    #[default]
    None,
    /// Addresses only.
    Conn,
    /// Addresses, `PP2_TYPE_SSL` (client flags, verify, version, cipher), SNI as
    /// `PP2_TYPE_AUTHORITY`, ALPN.
    Tls,
    /// As `Tls`, plus the client certificate's CN (0x22) and its DER (0x28).
    TlsFull,
}

impl Mode {
    /// Every mode with its config spelling.
    pub const ALL: [(&'static str, Mode); 4] = [
        ("none", Mode::None),
        ("conn", Mode::Conn),
        ("tls", Mode::Tls),
        ("tls-full", Mode::TlsFull),
    ];

    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, m)| *m)
    }
}

/// The TLS facts of one connection.
#[derive(Clone, Debug, Default)]
pub struct TlsFacts {
    /// `TLSv1.2` or `TLSv1.3` (OpenSSL's spelling, as HAProxy sends it).
    pub version: String,
    /// Cipher suite, IANA name.
    pub cipher: Option<String>,
    /// SNI.
    pub sni: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// A client certificate was presented on this connection.
    pub client_cert: bool,
    /// It was presented and verified against the listener's trust.
    pub verified: bool,
    /// Its subject CN.
    pub cn: Option<String>,
    /// Its DER.
    pub cert_der: Option<Vec<u8>>,
}

const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
const PP2_TYPE_ALPN: u8 = 0x01;
const PP2_TYPE_AUTHORITY: u8 = 0x02;
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;
const PP2_SUBTYPE_SSL_CLIENT_CERT: u8 = 0x28;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// Why a header cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Source and destination are of different address families.
    #[error("source and destination address families differ")]
    MixedFamilies,
    /// A TLV or the whole header exceeds 65535 bytes.
    #[error("PROXY header too large")]
    TooLarge,
}

fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len()).map_err(|_| EncodeError::TooLarge)?;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Builds the header for a connection from `src` to `dst` (the listener's concrete address).
/// Returns an empty vector for [`Mode::None`]. Fails closed rather than sending a partial header.
pub fn encode(
    mode: Mode,
    src: SocketAddr,
    dst: SocketAddr,
    tls: &TlsFacts,
) -> Result<Vec<u8>, EncodeError> {
    if mode == Mode::None {
        return Ok(Vec::new());
    }
    // IPv4-mapped IPv6 peers are reported as IPv4 when the listener is IPv4, and vice versa.
    let (src, dst) = match (src, dst) {
        (SocketAddr::V6(s), SocketAddr::V4(_)) => match s.ip().to_ipv4_mapped() {
            Some(v4) => (SocketAddr::from((v4, s.port())), dst),
            None => return Err(EncodeError::MixedFamilies),
        },
        (SocketAddr::V4(s), SocketAddr::V6(_)) => {
            (src, SocketAddr::from((s.ip().to_ipv6_mapped(), dst.port())))
        }
        other => other,
    };
    let mut body = Vec::with_capacity(64);
    let family = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            0x11
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            0x21
        }
        _ => return Err(EncodeError::MixedFamilies),
    };
    if matches!(mode, Mode::Tls | Mode::TlsFull) {
        if let Some(alpn) = &tls.alpn {
            tlv(&mut body, PP2_TYPE_ALPN, alpn)?;
        }
        if let Some(sni) = &tls.sni {
            tlv(&mut body, PP2_TYPE_AUTHORITY, sni.as_bytes())?;
        }
        let mut ssl = Vec::with_capacity(32);
        let mut client = PP2_CLIENT_SSL;
        if tls.client_cert {
            // No resumption on client-cert listeners: the session's certificate is this one.
            client |= PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS;
        }
        ssl.push(client);
        // The spec: 0 if and only if a certificate was presented and verified.
        let verify: u32 = if tls.client_cert && tls.verified {
            0
        } else {
            1
        };
        ssl.extend_from_slice(&verify.to_be_bytes());
        tlv(&mut ssl, PP2_SUBTYPE_SSL_VERSION, tls.version.as_bytes())?;
        if let Some(cipher) = &tls.cipher {
            tlv(&mut ssl, PP2_SUBTYPE_SSL_CIPHER, cipher.as_bytes())?;
        }
        if mode == Mode::TlsFull {
            if let Some(cn) = &tls.cn {
                tlv(&mut ssl, PP2_SUBTYPE_SSL_CN, cn.as_bytes())?;
            }
            if let Some(der) = &tls.cert_der {
                tlv(&mut ssl, PP2_SUBTYPE_SSL_CLIENT_CERT, der)?;
            }
        }
        tlv(&mut body, PP2_TYPE_SSL, &ssl)?;
    }
    let len = u16::try_from(body.len()).map_err(|_| EncodeError::TooLarge)?;
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, PROXY
    out.push(family);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_mode_ipv4_layout() {
        let h = encode(
            Mode::Conn,
            "10.0.0.1:1234".parse().unwrap(),
            "10.0.0.2:443".parse().unwrap(),
            &TlsFacts::default(),
        )
        .unwrap();
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
        assert_eq!(&h[16..20], &[10, 0, 0, 1]);
        assert_eq!(&h[24..26], &1234u16.to_be_bytes());
        assert!(
            encode(
                Mode::None,
                "10.0.0.1:1".parse().unwrap(),
                "10.0.0.2:2".parse().unwrap(),
                &TlsFacts::default()
            )
            .unwrap()
            .is_empty()
        );
    }
}
