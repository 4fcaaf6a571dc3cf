#!/usr/bin/perl
# Verify the DKIM signatures of the message on standard input with Mail::DKIM
# (a verifier that is not dkimpy), asking only the loopback DNS server on
# 127.0.0.1 at the port given as the one argument.  Prints one line per
# signature, "SIGNATURE algorithm selector domain result", then "RESULT result",
# each result other than "pass" followed by its detail in parentheses.
use strict;
use warnings;
use Mail::DKIM::DNS;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;

my ($port) = @ARGV;
die "usage: $0 DNS-PORT < message\n" unless defined $port && $port =~ /^\d+$/;

# No /etc/resolv.conf, no search list: nothing leaves the machine.
my $resolver = Net::DNS::Resolver->new(
    config_file => '/dev/null',
    nameservers => ['127.0.0.1'],
    port        => $port,
    defnames    => 0,
    dnsrch      => 0,
    retry       => 2,
    retrans     => 1,
    udp_timeout => 5,
    tcp_timeout => 5,
);
Mail::DKIM::DNS::resolver($resolver);

my $dkim = Mail::DKIM::Verifier->new();
binmode STDIN;
while (my $line = <STDIN>) {
    $line =~ s/\015?\012\z/\015\012/;
    $dkim->PRINT($line);
}
$dkim->CLOSE;

sub verdict {
    my ($thing) = @_;
    my $result = $thing->result // 'none';
    return $result eq 'pass' ? $result : "$result (" . ($thing->result_detail // '') . ')';
}

foreach my $signature ($dkim->signatures) {
    print join(' ', 'SIGNATURE', $signature->algorithm, $signature->selector,
        $signature->domain, verdict($signature)), "\n";
}
print join(' ', 'RESULT', verdict($dkim)), "\n";
