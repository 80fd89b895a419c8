//! The page itself: one HTML document with its CSS, its data and its script inline.
//!
//! Two ways in for a string from a JSON file, and only two: [`esc`] for HTML text and
//! attribute values, and [`script_json`] for the data block, which the script parses with
//! `JSON.parse` and shows with `textContent`. The Content-Security-Policy runs only the script
//! that carries this page's nonce and forbids every fetch, so even a string that got past both
//! could neither run nor call out.

use std::fmt::Write;

use super::model::{chart_data, Page};

const CSS: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// HTML-escapes `s` for text and for double- or single-quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `v` as JSON that is safe inside `<script type="application/json">`: no `<` (so no
/// `</script>` or `<!--`), `>` or `&`, and no U+2028/U+2029; each is written as its `\u`
/// escape, which `JSON.parse` turns back into the same character.
pub(crate) fn script_json(v: &serde_json::Value) -> String {
    let raw = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A fresh nonce for the page's one script.
fn nonce() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

pub(crate) fn page(p: &Page, title: Option<&str>) -> String {
    let title = title.unwrap_or(&p.title);
    let nonce = nonce();
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; \
         script-src 'nonce-{nonce}'; img-src data:; base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"netforge {ver}\">\n<title>{t}</title>\n<style>\n{CSS}</style>\n</head>\n\
         <body data-kind=\"{kind}\">\n<header>\n<h1>{t}</h1>\n<p class=\"sub\">netforge {ver} &middot; {kind} report</p>\n</header>\n",
        ver = env!("CARGO_PKG_VERSION"),
        t = esc(title),
        kind = esc(p.kind),
    );
    if let Some(v) = &p.verdict {
        let cls = if p.verdict_good.unwrap_or_else(|| v.contains(" YES")) { "yes" } else { "no" };
        let _ = writeln!(h, "<section class=\"verdict {cls}\" id=\"verdict\">{}</section>", esc(v));
    }
    h.push_str("<section class=\"summary\">\n<h2>Summary</h2>\n<table class=\"kv\">\n");
    for (k, v) in &p.summary {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    h.push_str("</table>\n</section>\n");
    if !p.notes.is_empty() {
        h.push_str("<ul class=\"notes\">\n");
        for n in &p.notes {
            let _ = writeln!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<section class=\"charts\">\n");
    for c in &p.charts {
        let _ = writeln!(
            h,
            "<figure class=\"chart\" id=\"chart-{id}\"><figcaption>{t}</figcaption>\
             <div class=\"plot\" data-chart=\"{id}\"></div><div class=\"legend\"></div></figure>",
            id = esc(&c.id),
            t = esc(&c.title)
        );
    }
    for b in &p.bars {
        let _ = writeln!(
            h,
            "<figure class=\"bars\" id=\"bars-{id}\"><figcaption>{t}</figcaption><div class=\"plot\" data-bars=\"{id}\"></div></figure>",
            id = esc(&b.id),
            t = esc(&b.title)
        );
    }
    h.push_str("</section>\n");
    for t in &p.tables {
        let _ = writeln!(
            h,
            "<section class=\"table\">\n<h2>{}</h2>\n<div class=\"scroll\"><table class=\"grid\">",
            esc(&t.title)
        );
        h.push_str("<thead><tr>");
        for c in &t.head {
            let _ = write!(h, "<th>{}</th>", esc(c));
        }
        h.push_str("</tr></thead>\n<tbody>\n");
        for r in &t.rows {
            h.push_str("<tr>");
            for c in r {
                let _ = write!(h, "<td>{}</td>", esc(c));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table></div>\n</section>\n");
    }
    if !p.commands.is_empty() {
        h.push_str("<section class=\"commands\">\n<h2>Command lines</h2>\n<dl>\n");
        for (what, cmd) in &p.commands {
            let _ = writeln!(h, "<dt>{}</dt><dd><pre>{}</pre></dd>", esc(what), esc(cmd));
        }
        h.push_str("</dl>\n</section>\n");
    }
    let _ = write!(
        h,
        "<p id=\"render-status\" class=\"status\">The charts need JavaScript.</p>\n\
         <script type=\"application/json\" id=\"netforge-data\">{}</script>\n\
         <script nonce=\"{nonce}\">\n{SCRIPT}</script>\n</body>\n</html>\n",
        script_json(&chart_data(p))
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html_and_script_data() {
        assert_eq!(esc("<a href=\"x\" b='y'>&</a>"), "&lt;a href=&quot;x&quot; b=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
        let v = serde_json::json!({"h": "</script><script>alert(1)</script><!-- & \u{2028}\u{2029}"});
        let s = script_json(&v);
        for bad in ["<", ">", "&", "\u{2028}", "\u{2029}"] {
            assert!(!s.contains(bad), "{bad:?} in {s}");
        }
        // The escapes are JSON: the same string comes back.
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v);
    }
}
