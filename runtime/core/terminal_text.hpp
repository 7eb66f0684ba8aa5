// Text from the network made safe to print on a terminal. A host name, a job id, an event's reason
// or a metric's name comes from whoever reached the broker; printed as it is, an escape sequence in
// it could clear the screen, move the cursor, retitle the window, rewrite the clipboard (OSC 52) or
// hide what came before it. esper top and esper watch pass every such string through
// terminal_safe() before printing it.
#pragma once

#include <string>
#include <string_view>

namespace esper {

enum class Newlines : bool { Replace, Keep };

// `text` with:
//  - escape sequences removed whole: CSI (ESC [ ... final byte), OSC, DCS, SOS, PM and APC strings
//    (up to BEL or ST, or the end of the text), and two-byte and intermediate ESC sequences;
//  - every other C0 control, DEL and C1 control (U+0080..U+009F) replaced by '?', as are the
//    Unicode bidirectional overrides and isolates (U+202A..U+202E, U+2066..U+2069), which reorder
//    what a terminal shows;
//  - a tab made a space, a newline kept only with Newlines::Keep (a carriage return is always '?');
//  - bytes that are not valid UTF-8 replaced by '?' (so every column counted is one shown).
// Printable ASCII and valid UTF-8 are kept as they are; the result never holds a control character
// (but newlines with Newlines::Keep).
[[nodiscard]] std::string terminal_safe(std::string_view text, Newlines newlines = Newlines::Replace);

}  // namespace esper
