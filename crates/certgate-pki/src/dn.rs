//! RFC 4514 distinguished-name strings: the one DN formatter for identities, headers and logs.
//!
//! x509-parser prints names in certificate order (`CN=a, O=b`, as OpenSSL does); RFC 4514 and Envoy
//! XFCC `Subject` list the RDNs in reverse (`O=b,CN=a`... reversed from the DER sequence), with no
//! spaces and with special characters escaped.

use std::fmt::Write as _;

use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// Formats a name as RFC 4514: last RDN first, `,` between RDNs, `+` inside a multi-valued RDN.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            push_attribute(&mut out, atv);
        }
    }
    out
}

fn push_attribute(out: &mut String, atv: &AttributeTypeAndValue<'_>) {
    let oid = atv.attr_type().to_id_string();
    let short = match oid.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "2.5.4.6" => Some("C"),
        "2.5.4.9" => Some("STREET"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        _ => None,
    };
    let value = match atv.as_str() {
        Ok(s) => Some(s.to_owned()),
        // BMPString (UTF-16BE) is common in older certificates.
        Err(_) if atv.attr_value().tag().0 == 30 => {
            let units: Vec<u16> = atv
                .as_slice()
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Err(_) => None,
    };
    match (short, value) {
        (Some(short), Some(value)) => {
            out.push_str(short);
            out.push('=');
            escape_value(out, &value);
        }
        (None, Some(value)) => {
            out.push_str(&oid);
            out.push('=');
            escape_value(out, &value);
        }
        // RFC 4514 §2.4: a value that is not a string is written as `#` and the hex of its BER.
        (_, None) => {
            let _ = write!(out, "{oid}=#");
            let any = atv.attr_value();
            let _ = write!(out, "{:02x}", any.tag().0 as u8);
            let len = any.data.len();
            if len < 0x80 {
                let _ = write!(out, "{len:02x}");
            } else {
                let bytes = len.to_be_bytes();
                let skip = bytes.iter().take_while(|b| **b == 0).count();
                let _ = write!(out, "{:02x}", 0x80 | (bytes.len() - skip));
                out.push_str(&hex::encode(&bytes[skip..]));
            }
            out.push_str(&hex::encode(any.data));
        }
    }
}

/// Escapes an attribute value per RFC 4514 §2.4.
pub fn escape_value(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_specials() {
        let mut s = String::new();
        escape_value(&mut s, " a,b+c\"d\\e<f>g;h ");
        assert_eq!(s, "\\ a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h\\ ");
        let mut s = String::new();
        escape_value(&mut s, "#x#");
        assert_eq!(s, "\\#x#");
    }
}
