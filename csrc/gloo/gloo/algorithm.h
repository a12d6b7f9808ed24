// See ../README.md: declarations only, for including c10d's ProcessGroupGloo.hpp.
#pragma once
