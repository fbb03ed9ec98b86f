"""The event path (issue 11): events recorded by RecordEvents, their durable log and
the live counters the eligibility rules read (couponrank/events/log.py). Imports
nothing of ours but couponrank.schema; the server imports it."""
