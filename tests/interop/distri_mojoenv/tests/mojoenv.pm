# Prints the Mojo variables of isotovideo's environment, one "qaworker-env NAME=value" line each.
use Mojo::Base 'basetest';
use testapi;

sub run {
    for my $name (qw(MOJO_INACTIVITY_TIMEOUT MOJO_CONNECT_TIMEOUT MOJO_REACTOR)) {
        diag("qaworker-env $name=" . ($ENV{$name} // 'unset'));
    }
}

sub test_flags { {fatal => 1} }

1;
