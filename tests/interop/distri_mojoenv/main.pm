# qaworker's own test distribution for the interop tests (issue 12 row 7): one module that writes the
# environment isotovideo got from the worker into autoinst-log.txt, read back from the web UI.
use strict;
use warnings;
use testapi;
use autotest;

autotest::loadtest('tests/mojoenv.pm');

1;
