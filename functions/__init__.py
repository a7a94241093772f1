"""Cloud Functions entry points: parse the event, call one domain function, map the outcome."""
