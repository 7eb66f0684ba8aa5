// One line of text for an event, as `esper watch` and `esper top` print it.
#pragma once

#include <string>

#include "fbs/envelope_generated.h"

namespace esper::controller {

[[nodiscard]] std::string describe(const wire::Event& event);

}  // namespace esper::controller
