#!/usr/bin/env bash
# Deploy sftpilot to Google Cloud with gcloud: the same resources, environment and IAM grants as
# the Terraform module in deploy/gcp/terraform, read from the same variables file.
#
#   deploy/gcp/deploy.sh [--dry-run] [--vars FILE] [--build-dir DIR]
#
#   --vars FILE      the variables file (default deploy/gcp/terraform/terraform.tfvars)
#   --build-dir DIR  where the source package, zip and env file are written (default deploy/gcp/build)
#   --dry-run        print every gcloud command instead of running it (the source package is
#                    still built locally; nothing in the project is touched)
#
# Idempotent: existing resources are described and kept (or updated in place), IAM bindings and
# function deployments converge, and "already exists" answers are only tolerated where creating
# is the only way to ask. Needs the project's Python environment (make venv, or PYTHON=...).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VARS="$HERE/terraform/terraform.tfvars"
BUILD_DIR="$HERE/build"
DRY_RUN=0

die() {
  echo "deploy.sh: error: $*" >&2
  exit 2
}

usage() {
  sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=1 && shift ;;
    --vars | --build-dir)
      (($# >= 2)) || die "$1 needs a value"
      if [[ $1 == --vars ]]; then VARS=$2; else BUILD_DIR=$2; fi
      shift 2
      ;;
    -h | --help) usage && exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[[ -f $VARS ]] || die "variables file $VARS not found: copy deploy/gcp/terraform/terraform.tfvars.example \
to deploy/gcp/terraform/terraform.tfvars and edit it, or pass --vars FILE"
VARS=$(cd "$(dirname "$VARS")" && pwd)/$(basename "$VARS")
mkdir -p "$BUILD_DIR"
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)

if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $ROOT/.venv/bin/python ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
if [[ $DRY_RUN == 0 ]]; then
  command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI and run gcloud auth login"
fi
cd "$ROOT"

# --- printing and running ---------------------------------------------------------------------

show() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
}

note() { printf '# %s\n' "$*"; }

step() { printf '\n# === %s\n' "$*"; }

run() {
  show "$@"
  if [[ $DRY_RUN == 0 ]]; then
    "$@"
  fi
}

# ensure DESCRIBE-COMMAND... -- CREATE-COMMAND...: create only when describe fails.
ensure() {
  local describe=()
  while [[ $1 != -- ]]; do describe+=("$1") && shift; done
  shift
  if [[ $DRY_RUN == 1 ]]; then
    note "if absent ($(printf '%q ' "${describe[@]}")):"
    show "$@"
  elif "${describe[@]}" >/dev/null 2>&1; then
    note "exists: $(printf '%q ' "${describe[@]}")"
  else
    run "$@"
  fi
}

# IAM bindings right after creating a service account can fail until it propagates: retry.
run_binding() {
  show "$@"
  if [[ $DRY_RUN == 1 ]]; then return 0; fi
  local attempt
  for attempt in 1 2 3 4 5 6; do
    if "$@"; then return 0; fi
    if ((attempt < 6)); then
      note "binding failed (attempt $attempt), retrying in 10 s (new service accounts take a moment to propagate)"
      sleep 10
    fi
  done
  return 1
}

# --- the plan ----------------------------------------------------------------------------------

"$PYTHON" -m deploy.gcp.config check --vars "$VARS" >/dev/null ||
  die "the variables file $VARS is invalid (see the message above)"
eval "$("$PYTHON" -m deploy.gcp.config shell --vars "$VARS")"
if [[ $DRY_RUN == 1 ]]; then
  note "dry run: the project number is looked up with: gcloud projects describe $VAR_PROJECT --format='value(projectNumber)'"
  NUMBER=PROJECT_NUMBER
else
  NUMBER=$(gcloud projects describe "$VAR_PROJECT" --format='value(projectNumber)') ||
    die "cannot read project $VAR_PROJECT (gcloud auth login? does the project exist?)"
fi
eval "$("$PYTHON" -m deploy.gcp.config shell --vars "$VARS" --project-number "$NUMBER")"
P=(--project="$VAR_PROJECT")
LABELS="managed-by=$VAR_MANAGED_BY"
note "deploying sftpilot to project $VAR_PROJECT ($VAR_REGION) from $VARS"

step "APIs"
run gcloud services enable "${APIS[@]}" "${P[@]}"
# Makes Google create the Cloud Storage service agent if it does not exist yet.
run gcloud storage service-agent "${P[@]}"

step "service accounts"
for key in "${SERVICE_ACCOUNT_KEYS[@]}"; do
  id_var=SA_${key^^}_ID email_var=SA_${key^^}_EMAIL
  ensure gcloud iam service-accounts describe "${!email_var}" "${P[@]}" -- \
    gcloud iam service-accounts create "${!id_var}" --display-name="sftpilot $key ($VAR_MANAGED_BY)" "${P[@]}"
done

step "buckets"
ensure gcloud storage buckets describe "gs://$VAR_BUCKET" "${P[@]}" -- \
  gcloud storage buckets create "gs://$VAR_BUCKET" --location="$VAR_REGION" \
  --uniform-bucket-level-access --public-access-prevention "${P[@]}"
if [[ $VAR_BUCKET_VERSIONING == true ]]; then versioning=--versioning; else versioning=--no-versioning; fi
run gcloud storage buckets update "gs://$VAR_BUCKET" --uniform-bucket-level-access \
  --public-access-prevention "$versioning" --update-labels="$LABELS" "${P[@]}"
ensure gcloud storage buckets describe "gs://$SOURCE_BUCKET" "${P[@]}" -- \
  gcloud storage buckets create "gs://$SOURCE_BUCKET" --location="$VAR_REGION" \
  --uniform-bucket-level-access --public-access-prevention "${P[@]}"
printf '{"rule": [{"action": {"type": "Delete"}, "condition": {"age": 30}}]}\n' >"$BUILD_DIR/sources-lifecycle.json"
run gcloud storage buckets update "gs://$SOURCE_BUCKET" --uniform-bucket-level-access \
  --public-access-prevention --lifecycle-file="$BUILD_DIR/sources-lifecycle.json" --update-labels="$LABELS" "${P[@]}"

step "Pub/Sub"
for topic in "$VAR_EVENTS_TOPIC" "$DEAD_LETTER_TOPIC"; do
  ensure gcloud pubsub topics describe "$topic" "${P[@]}" -- \
    gcloud pubsub topics create "$topic" --labels="$LABELS" "${P[@]}"
done
ensure gcloud pubsub subscriptions describe "$DEAD_LETTER_HOLD_SUBSCRIPTION" "${P[@]}" -- \
  gcloud pubsub subscriptions create "$DEAD_LETTER_HOLD_SUBSCRIPTION" --topic="$DEAD_LETTER_TOPIC" \
  --message-retention-duration="$DEAD_LETTER_HOLD_RETENTION" --expiration-period=never \
  --ack-deadline=60 --labels="$LABELS" "${P[@]}"

step "Firestore"
if [[ $VAR_CREATE_FIRESTORE_DATABASE == true ]]; then
  ensure gcloud firestore databases describe --database="$VAR_FIRESTORE_DATABASE" "${P[@]}" -- \
    gcloud firestore databases create --database="$VAR_FIRESTORE_DATABASE" \
    --location="$FIRESTORE_LOCATION" --type=firestore-native "${P[@]}"
fi
# One index at a time, waiting for each (no --async): Firestore answers 409 ABORTED ("too much
# contention" / another index operation running) to concurrent index builds, and ALREADY_EXISTS on
# a rerun (https://cloud.google.com/firestore/docs/query-data/indexing#index_build_errors).
create_index() {
  show "$@"
  if [[ $DRY_RUN == 1 ]]; then
    note "(waits for the build; ALREADY_EXISTS is kept; 409/ABORTED/contention retried up to 6 times, 15 s, 30 s, 60 s...)"
    return 0
  fi
  local attempt err delay=15
  for attempt in 1 2 3 4 5 6; do
    if err=$("$@" 2>&1 >/dev/null); then return 0; fi
    if grep -qiE 'ALREADY_EXISTS|already exists' <<<"$err"; then
      note "already exists"
      return 0
    fi
    if ! grep -qiE '409|ABORTED|contention|concurrent|RESOURCE_EXHAUSTED|try again' <<<"$err" || ((attempt == 6)); then
      echo "$err" >&2
      return 1
    fi
    note "index build busy (attempt $attempt): retrying in $delay s"
    sleep "$delay"
    delay=$((delay * 2))
  done
}
for field_configs in "${INDEX_FIELD_CONFIGS[@]}"; do
  read -ra flags <<<"$field_configs"
  create_index gcloud firestore indexes composite create --database="$VAR_FIRESTORE_DATABASE" \
    --collection-group="$VAR_JOBS_COLLECTION" --query-scope=collection "${flags[@]}" "${P[@]}"
done

# Grants on resources that exist now; invoker grants follow the functions.
grant() {
  local i=$1 member=${GRANT_MEMBERS[$1]} role=${GRANT_ROLES[$1]} on=${GRANT_ON[$1]}
  local condition=${GRANT_CONDITIONS[$1]} command=()
  case $on in
    project) command=(gcloud projects add-iam-policy-binding "$VAR_PROJECT" --condition="$condition") ;;
    datasets_bucket) command=(gcloud storage buckets add-iam-policy-binding "gs://$VAR_BUCKET" --condition="$condition") ;;
    sources_bucket) command=(gcloud storage buckets add-iam-policy-binding "gs://$SOURCE_BUCKET" --condition="$condition") ;;
    events_topic) command=(gcloud pubsub topics add-iam-policy-binding "$VAR_EVENTS_TOPIC") ;;
    dead_letter_topic) command=(gcloud pubsub topics add-iam-policy-binding "$DEAD_LETTER_TOPIC") ;;
    service_account:*) command=(gcloud iam service-accounts add-iam-policy-binding "${on#service_account:}") ;;
    function:*)
      local key=${on#function:} name_var
      name_var=FN_${key^^}_NAME
      command=(gcloud run services add-iam-policy-binding "${!name_var}" --region="$VAR_REGION")
      ;;
    *) die "roles.json: grant $i targets '$on', which deploy.sh does not know" ;;
  esac
  if [[ $on == *_topic || $on == function:* || $on == service_account:* ]] && [[ $condition != None ]]; then
    die "roles.json: conditions are only supported on the project and buckets (grant $i on $on)"
  fi
  command+=(--member="$member" --role="$role" --format=none "${P[@]}")
  run_binding "${command[@]}"
}

step "IAM grants (roles.json)"
for i in "${!GRANT_ROLES[@]}"; do
  # The tuning agent's grants are the second step (grant-tuning-agent.sh, at the end).
  if [[ ${GRANT_PRINCIPALS[$i]} == tuning_agent ]]; then continue; fi
  case ${GRANT_ON[$i]} in
    function:* | *_trigger_subscription) ;;
    *) grant "$i" ;;
  esac
done

step "function source"
MD5=$("$PYTHON" -m deploy.gcp.package --out "$BUILD_DIR/source" --vars "$VARS" --zip "$BUILD_DIR/sftpilot-source.zip")
SOURCE_OBJECT="gs://$SOURCE_BUCKET/sources/sftpilot-$MD5.zip"
note "built $BUILD_DIR/sftpilot-source.zip (md5 $MD5) from the repository"
run gcloud storage cp "$BUILD_DIR/sftpilot-source.zip" "$SOURCE_OBJECT" "${P[@]}"
"$PYTHON" -m deploy.gcp.config env-file --vars "$VARS" --out "$BUILD_DIR/env.yaml"
note "environment of every function ($BUILD_DIR/env.yaml):"
sed 's/^/#   /' "$BUILD_DIR/env.yaml"

step "functions"
for key in "${FUNCTION_KEYS[@]}"; do
  fn() { local v=FN_${key^^}_$1 && printf '%s' "${!v}"; }
  sa_var=SA_${key^^}_EMAIL
  command=(gcloud functions deploy "$(fn NAME)" --gen2 --region="$VAR_REGION" --runtime="$RUNTIME"
    --source="$SOURCE_OBJECT" --entry-point="$(fn ENTRY_POINT)" --service-account="${!sa_var}"
    --build-service-account="projects/$VAR_PROJECT/serviceAccounts/$SA_BUILD_EMAIL"
    --env-vars-file="$BUILD_DIR/env.yaml" --memory="$(fn MEMORY)" --timeout="$(fn TIMEOUT_SECONDS)s"
    --max-instances="$(fn MAX_INSTANCES)" --ingress-settings="$(fn INGRESS)" --update-labels="$LABELS")
  case $(fn TRIGGER) in
    storage)
      command+=(--trigger-event-filters="type=$(fn EVENT_TYPE)" --trigger-event-filters="bucket=$VAR_BUCKET"
        --trigger-location="$VAR_REGION" --trigger-service-account="$SA_TRIGGER_EMAIL")
      ;;
    topic)
      command+=(--trigger-topic="$VAR_EVENTS_TOPIC" --trigger-location="$VAR_REGION"
        --trigger-service-account="$SA_TRIGGER_EMAIL")
      ;;
    http | scheduler) command+=(--trigger-http --no-allow-unauthenticated) ;;
    *) die "unknown trigger kind $(fn TRIGGER) of $key" ;;
  esac
  if [[ $(fn RETRY) == true ]]; then command+=(--retry); fi
  run "${command[@]}" --quiet "${P[@]}"
done

step "invoker grants (roles.json)"
for i in "${!GRANT_ROLES[@]}"; do
  if [[ ${GRANT_ON[$i]} == function:* ]]; then grant "$i"; fi
done

step "dead-letter policies of the upload and completion triggers"
for key in upload completion; do
  name_var=FN_${key^^}_NAME
  dead_letter=(bash "$HERE/attach-dead-letter.sh" --project "$VAR_PROJECT" --region "$VAR_REGION"
    --function "${!name_var}" --dead-letter-topic "projects/$VAR_PROJECT/topics/$DEAD_LETTER_TOPIC"
    --max-attempts "$VAR_DEAD_LETTER_MAX_ATTEMPTS")
  for i in "${!GRANT_ROLES[@]}"; do
    if [[ ${GRANT_ON[$i]} == "${key}_trigger_subscription" ]]; then
      dead_letter+=(--grant "${GRANT_MEMBERS[$i]}=${GRANT_ROLES[$i]}")
    fi
  done
  if [[ $DRY_RUN == 1 ]]; then dead_letter+=(--dry-run); fi
  "${dead_letter[@]}"
done

step "Cloud Scheduler"
if [[ $DRY_RUN == 1 ]]; then
  show gcloud functions describe "$FN_POLLER_NAME" --region="$VAR_REGION" --format='value(serviceConfig.uri)' "${P[@]}"
  POLLER_URL="https://POLLER_URL_OF_$FN_POLLER_NAME"
else
  POLLER_URL=$(gcloud functions describe "$FN_POLLER_NAME" --region="$VAR_REGION" \
    --format='value(serviceConfig.uri)' "${P[@]}")
fi
schedule=(--location="$VAR_REGION" --schedule="$VAR_POLL_SCHEDULE" --uri="$POLLER_URL" --http-method=POST
  --oidc-service-account-email="$SA_SCHEDULER_EMAIL" --oidc-token-audience="$POLLER_URL"
  --attempt-deadline="$SCHEDULER_ATTEMPT_DEADLINE" --time-zone=Etc/UTC --max-retry-attempts=0 "${P[@]}")
if [[ $DRY_RUN == 0 ]] && gcloud scheduler jobs describe "$SCHEDULER_JOB" --location="$VAR_REGION" "${P[@]}" >/dev/null 2>&1; then
  run gcloud scheduler jobs update http "$SCHEDULER_JOB" "${schedule[@]}"
else
  run gcloud scheduler jobs create http "$SCHEDULER_JOB" "${schedule[@]}"
fi

step "second step: the Vertex AI tuning service agent (grant-tuning-agent.sh)"
tuning_agent=(bash "$HERE/grant-tuning-agent.sh" --project "$VAR_PROJECT" --bucket "$VAR_BUCKET")
for i in "${!GRANT_ROLES[@]}"; do
  if [[ ${GRANT_PRINCIPALS[$i]} == tuning_agent ]]; then
    case ${GRANT_ON[$i]} in
      datasets_bucket) tuning_agent+=(--grant "${GRANT_MEMBERS[$i]}=${GRANT_ROLES[$i]}") ;;
      service_account:*) tuning_agent+=(--sa-grant "${GRANT_ON[$i]#service_account:},${GRANT_MEMBERS[$i]}=${GRANT_ROLES[$i]}") ;;
      *) die "roles.json: tuning_agent grants are only supported on datasets_bucket and tuning_service_accounts" ;;
    esac
  fi
done
if [[ $DRY_RUN == 1 ]]; then tuning_agent+=(--dry-run); fi
"${tuning_agent[@]}"

step "done"
note "upload datasets to gs://$VAR_BUCKET/${VAR_DATASETS_PREFIX}<lineage>/<name>.jsonl"
note "events: projects/$VAR_PROJECT/topics/$VAR_EVENTS_TOPIC"
note "jobs API: $API_URL (members of api_invokers, with an identity token)"
