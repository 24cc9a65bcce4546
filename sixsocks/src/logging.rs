//! Log lines on stderr, as text or as one JSON object per line, and the
//! guard that keeps a text line one line.
//!
//! Peers choose much of what a log line shows: target names, user names,
//! the reasons resolvers and upstreams give. A `\n` in any of them would
//! end the line early and let the rest pose as a line of its own (a forged
//! `session end`, say). Names are escaped where they are shown
//! (`sixsocks_proto::ShownName`), but a text line has many sources, so the
//! last word is here, where every text line passes: [`OneLine`] escapes
//! every control character of an event (`\n` → `\\n`, `\r`, `\t`, others as
//! `\x1b`-style hex), except the line's own final newline and, when colours
//! are on, the escape character of the formatter's own colour codes. JSON
//! lines need no guard: the JSON encoder escapes strings.

use std::borrow::Cow;
use std::io::{self, Write};

use sixsocks_server::config::LogFormat;
use tracing_subscriber::fmt::MakeWriter;

/// Log to stderr, as text or as one JSON object per line.
pub fn init(verbose: u8, format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => {
            let ansi = io::stderr().is_terminal();
            fmt.with_writer(OneLine { ansi }).with_ansi(ansi).init()
        }
        // The event's fields at the top level (`{"timestamp":..,"level":..,
        // "message":"session end","client":..}`). The logger's target is
        // left out: the session line has a field named `target` (the
        // destination), and a JSON object must not have the key twice.
        LogFormat::Json => fmt
            .with_writer(io::stderr)
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_ansi(false)
            .init(),
    }
}

/// A stderr writer that keeps each text event on one line (see the module
/// docs). The formatter writes an event as one buffer ending in `\n`, in
/// one `write_all`.
#[derive(Clone, Copy, Debug)]
pub struct OneLine {
    /// Colour codes are on: `ESC` is the formatter's own.
    pub ansi: bool,
}

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLineWriter;
    fn make_writer(&'a self) -> OneLineWriter {
        OneLineWriter { ansi: self.ansi }
    }
}

pub struct OneLineWriter {
    ansi: bool,
}

impl Write for OneLineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr()
            .lock()
            .write_all(&escape_event(buf, self.ansi))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// `event` with every control character escaped (C0, DEL, C1 and the
/// Unicode line and paragraph separators, which some viewers break lines
/// at) but a final `\n`, and `ESC` when `ansi`.
pub fn escape_event(event: &[u8], ansi: bool) -> Cow<'_, [u8]> {
    let (body, end) = match event.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (event, &b""[..]),
    };
    // The common line, plain ASCII without a control character, is
    // written as it is: one pass over its bytes, no copy.
    let plain = |b: &u8| (0x20..0x7f).contains(b) || (ansi && *b == 0x1b);
    if body.iter().all(plain) {
        return Cow::Borrowed(event);
    }
    let text = String::from_utf8_lossy(body);
    let bad = |c: char| {
        (c.is_control() && !(ansi && c == '\x1b')) || matches!(c, '\u{2028}' | '\u{2029}')
    };
    if !text.chars().any(bad) {
        return Cow::Borrowed(event);
    }
    let mut out = String::with_capacity(event.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if bad(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if bad(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    let mut out = out.into_bytes();
    out.extend_from_slice(end);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escape_event as escape;

    fn escape_event(event: &[u8], ansi: bool) -> Vec<u8> {
        escape(event, ansi).into_owned()
    }

    #[test]
    fn an_event_stays_one_line() {
        let forged =
            b"INFO rules: request to evil\n2026-01-01T00:00:00Z INFO session end user=admin\n";
        let out = escape_event(forged, false);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(out.ends_with(b"user=admin\n"));
        assert!(
            String::from_utf8_lossy(&out).contains("evil\\n2026"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(
            escape_event(b"a\rb\tc\x1bd\x7f\n", false),
            b"a\\rb\\tc\\x1bd\\x7f\n"
        );
        // With colours on, the formatter's ESC stays.
        assert_eq!(
            escape_event(b"\x1b[1mINFO\x1b[0m x\n", true),
            b"\x1b[1mINFO\x1b[0m x\n"
        );
        // A clean line is unchanged.
        assert_eq!(escape_event(b"plain line\n", false), b"plain line\n");
        // Non-ASCII text is not a control character; C1 controls and the
        // Unicode line separator are.
        assert_eq!(
            escape_event("naïve\n".as_bytes(), false),
            "naïve\n".as_bytes()
        );
        assert_eq!(
            escape_event("a\u{85}b\u{2028}c\n".as_bytes(), false),
            b"a\\x85b\\u{2028}c\n"
        );
    }
}
