// Package contract holds the Go side of the cross-language contract tests
// (tests only): the scenarios written by scripts/contract_server.py, run with
// the Go client against the live server it starts, must give the answers the
// same server computed in process, and the README's Go snippet must build and
// run against it.
//
// scripts/test.sh starts the server and sets COUPONRANK_CONTRACT_ADDR and
// COUPONRANK_CONTRACT_DIR; without them the tests skip (the README snippet is
// still built). The test writes its scenario lines to DIR/go.jsonl, which
// scripts/contract_check.py compares with the Python and Java ones. Its events
// go under the event id prefix "go/": a second run against the same server
// gets EVENT_STATUS_DUPLICATE answers, so restart the server to run again.
package contract
