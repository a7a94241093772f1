#!/usr/bin/env bash
# Give the Pub/Sub subscription behind a function's Eventarc trigger a dead-letter policy.
#
# Eventarc creates that subscription itself (eventarc-REGION-TRIGGER-sub-NNN) and neither the
# Cloud Functions API nor the Terraform provider can configure its dead-lettering, so both
# deployment paths run this script once the function exists. Idempotent.
#
#   attach-dead-letter.sh --project P --region R --function NAME \
#       --dead-letter-topic projects/P/topics/T --max-attempts N \
#       [--grant MEMBER=ROLE ...] [--dry-run]
#
# --grant binds MEMBER to ROLE on the subscription (the Pub/Sub service agent needs
# roles/pubsub.subscriber there to forward messages; the grants come from roles.json).
set -euo pipefail

die() {
  echo "attach-dead-letter.sh: error: $*" >&2
  exit 2
}

show() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
}

PROJECT="" REGION="" FUNCTION="" TOPIC="" ATTEMPTS="" DRY_RUN=0
GRANTS=()
while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=1 && shift && continue ;;
    --project | --region | --function | --dead-letter-topic | --max-attempts | --grant)
      (($# >= 2)) || die "$1 needs a value" ;;
    *) die "unknown argument: $1" ;;
  esac
  case $1 in
    --project) PROJECT=$2 ;;
    --region) REGION=$2 ;;
    --function) FUNCTION=$2 ;;
    --dead-letter-topic) TOPIC=$2 ;;
    --max-attempts) ATTEMPTS=$2 ;;
    --grant) GRANTS+=("$2") ;;
  esac
  shift 2
done
declare -A FLAG_OF=([PROJECT]=--project [REGION]=--region [FUNCTION]=--function
  [TOPIC]=--dead-letter-topic [ATTEMPTS]=--max-attempts)
for required in PROJECT REGION FUNCTION TOPIC ATTEMPTS; do
  [[ -n ${!required} ]] || die "missing ${FLAG_OF[$required]}"
done
[[ $TOPIC == projects/*/topics/* ]] || die "--dead-letter-topic must be a full topic path (projects/P/topics/T), got $TOPIC"
[[ $ATTEMPTS =~ ^[0-9]+$ ]] && ((ATTEMPTS >= 5 && ATTEMPTS <= 100)) || die "--max-attempts must be 5..100, got $ATTEMPTS"

describe_trigger=(gcloud functions describe "$FUNCTION" --project="$PROJECT" --region="$REGION" --format='value(eventTrigger.trigger)')
if [[ $DRY_RUN == 1 ]]; then
  show "${describe_trigger[@]}"
  TRIGGER="TRIGGER_OF_${FUNCTION}"
  show gcloud eventarc triggers describe "$TRIGGER" --format='value(transport.pubsub.subscription)'
  SUBSCRIPTION="SUBSCRIPTION_OF_${FUNCTION}"
else
  TRIGGER=$("${describe_trigger[@]}") || die "cannot describe function $FUNCTION"
  [[ -n $TRIGGER ]] || die "function $FUNCTION has no event trigger"
  SUBSCRIPTION=$(gcloud eventarc triggers describe "$TRIGGER" --format='value(transport.pubsub.subscription)') ||
    die "cannot describe trigger $TRIGGER"
  [[ -n $SUBSCRIPTION ]] || die "trigger $TRIGGER has no Pub/Sub subscription"
fi

run() {
  show "$@"
  if [[ $DRY_RUN == 0 ]]; then
    "$@"
  fi
}

for grant in "${GRANTS[@]}"; do
  member=${grant%=*} role=${grant##*=}
  [[ -n $member && $role == roles/* ]] || die "--grant must be MEMBER=ROLE, got $grant"
  run gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --project="$PROJECT" \
    --member="$member" --role="$role" --format=none
done
run gcloud pubsub subscriptions update "$SUBSCRIPTION" --project="$PROJECT" \
  --dead-letter-topic="$TOPIC" --max-delivery-attempts="$ATTEMPTS"
