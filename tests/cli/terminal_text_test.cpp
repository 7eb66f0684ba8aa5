// terminal_safe(): what esper top and esper watch do to every string from the network before it
// reaches the terminal.
#include <gtest/gtest.h>

#include <string>

#include "core/terminal_text.hpp"

namespace esper {
namespace {

bool has_control(const std::string& s, bool newlines_ok = false) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b == '\n' && newlines_ok) continue;
    if (b < 0x20 || b == 0x7F) return true;
    if (b == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      return true;  // a C1 control as UTF-8
    }
  }
  return false;
}

TEST(TerminalText, PrintableTextAndUtf8AreKeptAsTheyAre) {
  EXPECT_EQ(terminal_safe("rank 3 lost: node7 (exit 1)"), "rank 3 lost: node7 (exit 1)");
  EXPECT_EQ(terminal_safe("grün — ✓ 日本 🙂"), "grün — ✓ 日本 🙂");
  EXPECT_EQ(terminal_safe(""), "");
}

TEST(TerminalText, EscapeSequencesAreRemovedWhole) {
  EXPECT_EQ(terminal_safe("evil\x1b[2Jx"), "evilx") << "CSI: clear screen";
  EXPECT_EQ(terminal_safe("a\x1b[1;31mred\x1b[0m b"), "ared b") << "SGR colors";
  EXPECT_EQ(terminal_safe("a\x1b[?1049h\x1b[?25lb"), "ab") << "alternate screen, hidden cursor";
  EXPECT_EQ(terminal_safe("t\x1b]0;pwned\x07x"), "tx") << "OSC window title, ended by BEL";
  EXPECT_EQ(terminal_safe("c\x1b]52;c;ZXZpbA==\x1b\\d"), "cd") << "OSC 52 clipboard write, ended by ST";
  EXPECT_EQ(terminal_safe("p\x1bPq#0;2;0;0;0\x1b\\q"), "pq") << "DCS (sixel)";
  EXPECT_EQ(terminal_safe("u\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\v"), "ulinkv") << "OSC 8 hyperlink";
  EXPECT_EQ(terminal_safe("r\x1b" "cs"), "rs") << "ESC c: full reset";
  EXPECT_EQ(terminal_safe("g\x1b(0qqq\x1b(Bh"), "gqqqh") << "ESC ( 0: line-drawing charset";
  EXPECT_EQ(terminal_safe("m\x1b" "7n\x1b" "8"), "mn") << "save/restore cursor";
  EXPECT_EQ(terminal_safe("unterminated \x1b]0;title"), "unterminated ") << "an OSC never ended swallows the rest";
  EXPECT_EQ(terminal_safe("end\x1b"), "end") << "a lone ESC at the end";
  EXPECT_EQ(terminal_safe("x\x1b\x1b[Ky"), "xy");
}

TEST(TerminalText, OtherControlsBecomeQuestionMarks) {
  EXPECT_EQ(terminal_safe("bell\x07 bs\x08 cr\r del\x7f end"), "bell? bs? cr? del? end");
  EXPECT_EQ(terminal_safe(std::string("a\0b", 3)), "a?b");
  EXPECT_EQ(terminal_safe("bell\x07"), "bell?");
  EXPECT_EQ(terminal_safe("over\rwrite"), "over?write") << "a carriage return could overwrite the line";
  EXPECT_EQ(terminal_safe("del\x7f"), "del?");
  EXPECT_EQ(terminal_safe("tab\there"), "tab here");
  EXPECT_EQ(terminal_safe("two\nlines"), "two?lines");
  EXPECT_EQ(terminal_safe("two\nlines", Newlines::Keep), "two\nlines");
  EXPECT_EQ(terminal_safe("evil\x1b[2J\x07\nx"), "evil??x");
}

TEST(TerminalText, C1ControlsAndBidiOverridesAreNeutralized) {
  EXPECT_EQ(terminal_safe("a\xc2\x9b" "2Jb"), "ab") << "C1 CSI as UTF-8, removed with its parameters";
  EXPECT_EQ(terminal_safe("a\xc2\x9d" "0;t\xc2\x9c" "b"), "ab") << "C1 OSC ended by C1 ST";
  EXPECT_EQ(terminal_safe("a\xc2\x85" "b"), "a?b") << "NEL";
  EXPECT_EQ(terminal_safe("a\x9b" "2Jb"), "a?2Jb") << "a raw C1 byte is not UTF-8: '?', and inert";
  EXPECT_EQ(terminal_safe("x\xe2\x80\xaeyz"), "x?yz") << "RIGHT-TO-LEFT OVERRIDE";
  EXPECT_EQ(terminal_safe("x\xe2\x81\xa6y"), "x?y") << "LEFT-TO-RIGHT ISOLATE";
}

TEST(TerminalText, InvalidUtf8BecomesQuestionMarks) {
  EXPECT_EQ(terminal_safe("a\xff" "b"), "a?b");
  EXPECT_EQ(terminal_safe("a\xc0\xaf" "b"), "a??b") << "overlong '/'";
  EXPECT_EQ(terminal_safe("a\xed\xa0\x80" "b"), "a???b") << "a surrogate";
  EXPECT_EQ(terminal_safe("cut \xe2\x96"), "cut ??") << "a sequence cut short";
  EXPECT_EQ(terminal_safe("\xf4\x90\x80\x80"), "????") << "past U+10FFFF";
}

TEST(TerminalText, NoControlCharacterSurvivesAnyInput) {
  // Every byte after every byte, and runs of the introducers: the output holds no control.
  std::string all;
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; b += 7) {
      all += static_cast<char>(a);
      all += static_cast<char>(b);
      all += 'x';
    }
  }
  EXPECT_FALSE(has_control(terminal_safe(all)));
  EXPECT_FALSE(has_control(terminal_safe(all, Newlines::Keep), true));
  const std::string once = terminal_safe(all);
  EXPECT_EQ(terminal_safe(once), once) << "idempotent";
}

}  // namespace
}  // namespace esper
