# (a) The BPF_PROG_TEST_RUN fixture table, run by the statically linked test binary: the
# relay program loads and passes the verifier on this kernel, and every case passes.
. /vm/guest/lib.sh
/vm/xdp_fixtures --test-threads=1 || fail "fixture table failed"
