/* placeholder: to be written */
#include "unit.h"
TEST(not_written_yet)
{
    CHECK(0);
}
RUN(not_written_yet)
