//! The status document (`/status` of the admin listener) for people: the admin page (`/`) and
//! `certgate status`. Both render the same sections, so the terminal and the browser never
//! disagree.
//!
//! Everything shown is escaped: certificate subjects, paths and reasons of refused requests are
//! chosen by clients. The page has no script and loads nothing (its CSS is inline), and reads at
//! phone width (tables scroll sideways inside their box).

use std::fmt::Write as _;

use serde_json::Value;

/// Days before expiry from which a certificate or CRL is shown as a warning, when the document
/// does not say (`warnings` in it carries the config's `[warnings]`).
const DEFAULT_CERTIFICATE_DAYS: i64 = 14;
const DEFAULT_CRL_DAYS: i64 = 7;

/// How a cell should look.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tone {
    Plain,
    Good,
    Warn,
    Bad,
}

struct Cell {
    text: String,
    tone: Tone,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self {
            text,
            tone: Tone::Plain,
        }
    }
}

struct Section {
    title: String,
    columns: &'static [&'static str],
    rows: Vec<Vec<Cell>>,
    /// Shown instead of an empty table.
    empty: &'static str,
    /// Preformatted text under the table (the log's checkpoint).
    note: Option<String>,
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// "in 42 days" / "expired 3 days ago", toned by how close it is to `warn_days`.
fn expiry(seconds_left: &Value, warn_days: i64) -> Cell {
    let Some(secs) = seconds_left.as_i64() else {
        return Cell::from(String::new());
    };
    let days = secs.div_euclid(86_400);
    let (text, tone) = if secs < 0 {
        (format!("expired {} days ago", -days), Tone::Bad)
    } else if days < warn_days {
        (format!("in {days} days"), Tone::Warn)
    } else {
        (format!("in {days} days"), Tone::Good)
    };
    Cell {
        text: text
            .replace("in 0 days", "today")
            .replace("1 days", "1 day"),
        tone,
    }
}

fn sections(doc: &Value) -> Vec<Section> {
    let list = |key: &str| doc[key].as_array().cloned().unwrap_or_default();
    let cert_days = doc["warnings"]["certificate_days"]
        .as_i64()
        .unwrap_or(DEFAULT_CERTIFICATE_DAYS);
    let crl_days = doc["warnings"]["crl_days"]
        .as_i64()
        .unwrap_or(DEFAULT_CRL_DAYS);
    let mut out = Vec::new();

    let listeners = list("listeners");
    out.push(Section {
        title: "Listeners".to_owned(),
        columns: &["kind", "name", "address", "client auth", "trust"],
        rows: listeners
            .iter()
            .map(|l| {
                vec![
                    Cell::from(s(&l["kind"])),
                    Cell::from(s(&l["name"])),
                    Cell::from(s(&l["addr"])),
                    Cell::from(s(&l["client_auth"])),
                    Cell::from(s(&l["trust"])),
                ]
            })
            .collect(),
        empty: "none",
        note: None,
    });
    out.push(Section {
        title: "Routes".to_owned(),
        columns: &["listener", "host", "path", "upstream", "who may use it"],
        rows: listeners
            .iter()
            .flat_map(|l| {
                let listener = s(&l["name"]);
                l["routes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |r| {
                        let host = s(&r["host"]);
                        vec![
                            Cell::from(listener.clone()),
                            Cell::from(if host.is_empty() {
                                "any".to_owned()
                            } else {
                                host
                            }),
                            Cell::from(s(&r["path"])),
                            Cell::from(s(&r["upstream"])),
                            Cell::from(s(&r["access"])),
                        ]
                    })
            })
            .collect(),
        empty: "none",
        note: None,
    });
    out.push(Section {
        title: "Egress rules".to_owned(),
        columns: &["listener", "rule", "identities"],
        rows: listeners
            .iter()
            .flat_map(|l| {
                let listener = s(&l["name"]);
                l["rules"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |r| {
                        let ids: Vec<String> = r["identities"]
                            .as_array()
                            .map(|a| a.iter().map(s).collect())
                            .unwrap_or_default();
                        vec![
                            Cell::from(listener.clone()),
                            Cell::from(s(&r["name"])),
                            Cell::from(ids.join(", ")),
                        ]
                    })
            })
            .collect(),
        empty: "none",
        note: None,
    });
    let mut certs: Vec<Vec<Cell>> = list("certificates")
        .iter()
        .map(|c| {
            vec![
                Cell::from(format!("identity {}", s(&c["identity"]))),
                Cell::from(s(&c["subject"])),
                Cell::from(s(&c["not_after"])),
                expiry(&c["seconds_left"], cert_days),
            ]
        })
        .collect();
    let trusts = list("trusts");
    for t in &trusts {
        for ca in t["cas"].as_array().cloned().unwrap_or_default() {
            certs.push(vec![
                Cell::from(format!("CA of trust {}", s(&t["name"]))),
                Cell::from(s(&ca["subject"])),
                Cell::from(s(&ca["not_after"])),
                expiry(&ca["seconds_left"], cert_days),
            ]);
        }
    }
    out.push(Section {
        title: "Certificates".to_owned(),
        columns: &["what", "subject", "not after", "expires"],
        rows: certs,
        empty: "none",
        note: None,
    });
    out.push(Section {
        title: "CRLs".to_owned(),
        columns: &["trust", "issuer", "revoked", "next update", "due"],
        rows: trusts
            .iter()
            .flat_map(|t| {
                let name = s(&t["name"]);
                t["crls"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |c| {
                        vec![
                            Cell::from(name.clone()),
                            Cell::from(s(&c["issuer"])),
                            Cell::from(s(&c["revoked"])),
                            Cell::from(s(&c["next_update"])),
                            expiry(&c["seconds_left"], crl_days),
                        ]
                    })
            })
            .collect(),
        empty: "no trust bundle has a CRL",
        note: None,
    });
    out.push(Section {
        title: "CRLs fetched from URLs".to_owned(),
        columns: &["trust", "url", "last fetched", "next update", "due"],
        rows: list("crl_sources")
            .iter()
            .map(|c| {
                vec![
                    Cell::from(s(&c["trust"])),
                    Cell::from(s(&c["url"])),
                    Cell::from(match s(&c["last_success"]) {
                        t if t.is_empty() => "never".to_owned(),
                        t => t,
                    }),
                    Cell::from(s(&c["next_update"])),
                    expiry(&c["seconds_left"], crl_days),
                ]
            })
            .collect(),
        empty: "none (trusts list CRL files only)",
        note: None,
    });
    let denials = list("denials");
    out.push(Section {
        title: format!("Recent refusals ({})", denials.len()),
        columns: &["when", "listener", "route", "status", "client", "reason"],
        rows: denials
            .iter()
            .map(|d| {
                vec![
                    Cell::from(s(&d["at"])),
                    Cell::from(s(&d["listener"])),
                    Cell::from(s(&d["route"])),
                    Cell {
                        text: s(&d["status"]),
                        tone: Tone::Warn,
                    },
                    Cell::from(s(&d["client"])),
                    Cell::from(s(&d["reason"])),
                ]
            })
            .collect(),
        empty: "none since start",
        note: None,
    });
    if let Some(log) = doc.get("log") {
        out.push(Section {
            title: "Transparency log".to_owned(),
            columns: &["origin", "entries"],
            rows: vec![vec![
                Cell::from(s(&log["origin"])),
                Cell::from(if log["error"].is_null() {
                    s(&log["size"])
                } else {
                    s(&log["error"])
                }),
            ]],
            empty: "",
            note: log["checkpoint"].as_str().map(str::to_owned),
        });
    }
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #ffffff; --muted: #5b636e; --line: #d6dae0;
  --good: #1a7f37; --warn: #9a6700; --bad: #cf222e; --head: #f3f5f7; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ed; --bg: #0f1216; --muted: #9aa4af;
  --line: #2d333b; --good: #3fb950; --warn: #d29922; --bad: #f85149; --head: #161b22; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: var(--fg); background: var(--bg); }
header, main { max-width: 1200px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
header p { margin: 0 0 8px; color: var(--muted); overflow-wrap: anywhere; }
h2 { font-size: 17px; margin: 24px 0 8px; }
.box { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--head); font-weight: 600; white-space: nowrap; }
tr:last-child td { border-bottom: 0; }
td { overflow-wrap: break-word; min-width: 7em; }
.good { color: var(--good); } .warn { color: var(--warn); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.empty { color: var(--muted); padding: 8px 10px; margin: 0; }
pre { margin: 8px 0 0; padding: 8px 10px; border: 1px solid var(--line); border-radius: 6px; overflow-x: auto; font-size: 13px; }
footer { max-width: 1200px; margin: 24px auto; padding: 0 16px; color: var(--muted); font-size: 13px; }
";

/// The admin page.
pub fn html(doc: &Value) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>certgate status</title><style>{STYLE}</style></head><body>\
         <header><h1>certgate</h1><p>{}</p></header><main>",
        escape(&s(&doc["config"]))
    );
    for section in sections(doc) {
        let _ = write!(out, "<h2>{}</h2>", escape(&section.title));
        if section.rows.is_empty() {
            let _ = write!(
                out,
                "<div class=\"box\"><p class=\"empty\">{}</p></div>",
                escape(section.empty)
            );
        } else {
            out.push_str("<div class=\"box\"><table><thead><tr>");
            for c in section.columns {
                let _ = write!(out, "<th>{}</th>", escape(c));
            }
            out.push_str("</tr></thead><tbody>");
            for row in &section.rows {
                out.push_str("<tr>");
                for cell in row {
                    let class = match cell.tone {
                        Tone::Plain => "",
                        Tone::Good => " class=\"good\"",
                        Tone::Warn => " class=\"warn\"",
                        Tone::Bad => " class=\"bad\"",
                    };
                    let _ = write!(out, "<td{class}>{}</td>", escape(&cell.text));
                }
                out.push_str("</tr>");
            }
            out.push_str("</tbody></table></div>");
        }
        if let Some(note) = &section.note {
            let _ = write!(out, "<pre>{}</pre>", escape(note));
        }
    }
    out.push_str(
        "</main><footer>The same document as JSON: <code>/status</code>; metrics: \
         <code>/metrics</code>. In a terminal: <code>certgate status --config FILE</code>.</footer>\
         </body></html>\n",
    );
    out
}

/// The same sections as text, for `certgate status`.
pub fn text(doc: &Value) -> String {
    let mut out = format!("certgate {}\n", s(&doc["config"]));
    for section in sections(doc) {
        let _ = write!(out, "\n{}\n", section.title);
        if section.rows.is_empty() {
            let _ = writeln!(out, "  {}", section.empty);
        } else {
            let clean = |t: &str| {
                t.chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect::<String>()
            };
            let rows: Vec<Vec<String>> = section
                .rows
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|c| {
                            let mark = match c.tone {
                                Tone::Warn => " (!)",
                                Tone::Bad => " (!!)",
                                _ => "",
                            };
                            format!("{}{mark}", clean(&c.text))
                        })
                        .collect()
                })
                .collect();
            let mut widths: Vec<usize> =
                section.columns.iter().map(|c| c.chars().count()).collect();
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count()).min(60);
                }
            }
            let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
                let mut l = String::from(" ");
                for (c, w) in cells.zip(&widths) {
                    let _ = write!(l, " {c:<w$}");
                }
                l.trim_end().to_owned()
            };
            let _ = writeln!(out, "{}", line(&mut section.columns.iter().copied()));
            for r in &rows {
                let _ = writeln!(out, "{}", line(&mut r.iter().map(String::as_str)));
            }
        }
        if let Some(note) = &section.note {
            for l in note.lines() {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_chosen_text_is_escaped() {
        let doc = serde_json::json!({
            "config": "/etc/certgate/certgate.toml",
            "denials": [{ "at": "now", "listener": "web", "route": "r", "status": 403,
                "client": "CN=<script>alert(1)</script>", "reason": "\"quoted\" & 'single'" }],
        });
        let page = html(&doc);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("CN=&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;quoted&quot; &amp; &#39;single&#39;"));
        let t = text(&serde_json::json!({ "denials": [{ "client": "a\u{1b}[31mred" }] }));
        assert!(!t.contains('\u{1b}'), "{t}");
    }

    #[test]
    fn expiry_is_toned() {
        assert!(expiry(&serde_json::json!(-86_400), 14).tone == Tone::Bad);
        assert!(expiry(&serde_json::json!(3 * 86_400), 14).tone == Tone::Warn);
        assert!(expiry(&serde_json::json!(30 * 86_400), 14).tone == Tone::Good);
        assert!(expiry(&serde_json::json!(10 * 86_400), 7).tone == Tone::Good);
        assert!(expiry(&serde_json::json!(10 * 86_400), 30).tone == Tone::Warn);
        assert_eq!(expiry(&serde_json::json!(86_400 + 5), 14).text, "in 1 day");
    }
}
