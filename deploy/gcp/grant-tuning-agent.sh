#!/usr/bin/env bash
# Second step of a deployment: give the Vertex AI tuning service agent its grants.
#
# Vertex AI runs tuning jobs as the "Vertex AI Secure Fine-Tuning Service Agent"
# (service-N@gcp-sa-vertex-tune.iam.gserviceaccount.com,
# https://cloud.google.com/iam/docs/service-agents#vertex-ai-secure-fine-tuning-service-agent),
# and Google creates that agent lazily, with the project's first tuning job: before it exists,
# every grant naming it fails with "does not exist". Google documents one creation command for
# Vertex AI, `gcloud beta services identity create --service=aiplatform.googleapis.com`, which
# creates the Vertex AI Service Agent (gcp-sa-aiplatform); we run it, but found no documented way to
# create the tuning agent ahead of its first job. So this step never fails on a missing agent:
# it grants what it can and says to run it again (or rerun deploy.sh / terraform apply) after the
# first tuning job. Both deployment paths run it; it is idempotent.
#
#   grant-tuning-agent.sh --project P --bucket B [--grant MEMBER=ROLE ...]
#       [--sa-grant SERVICE_ACCOUNT_EMAIL,MEMBER=ROLE ...] [--dry-run]
#
# --grant binds on the dataset bucket; --sa-grant on a custom tuning service account.
set -euo pipefail

die() {
  echo "grant-tuning-agent.sh: error: $*" >&2
  exit 2
}

show() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
}

note() { printf '# %s\n' "$*"; }

PROJECT="" BUCKET="" DRY_RUN=0
GRANTS=() SA_GRANTS=()
while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=1 && shift && continue ;;
    --project | --bucket | --grant | --sa-grant) (($# >= 2)) || die "$1 needs a value" ;;
    *) die "unknown argument: $1" ;;
  esac
  case $1 in
    --project) PROJECT=$2 ;;
    --bucket) BUCKET=$2 ;;
    --grant) GRANTS+=("$2") ;;
    --sa-grant) SA_GRANTS+=("$2") ;;
  esac
  shift 2
done
[[ -n $PROJECT ]] || die "missing --project"
[[ -n $BUCKET ]] || die "missing --bucket"

identity=(gcloud beta services identity create --service=aiplatform.googleapis.com --project="$PROJECT" --format=none)
show "${identity[@]}"
if [[ $DRY_RUN == 0 ]] && ! "${identity[@]}"; then
  note "WARNING: could not create the Vertex AI service agent (continuing: Vertex AI creates it on first use)"
fi

missing=0
commands=()
for grant in "${GRANTS[@]}"; do
  member=${grant%=*} role=${grant##*=}
  [[ -n $member && $role == roles/* ]] || die "--grant must be MEMBER=ROLE, got $grant"
  commands+=("gcloud storage buckets add-iam-policy-binding gs://$BUCKET --member=$member --role=$role")
done
for grant in "${SA_GRANTS[@]}"; do
  account=${grant%%,*} rest=${grant#*,}
  member=${rest%=*} role=${rest##*=}
  [[ $account == *@* && -n $member && $role == roles/* ]] || die "--sa-grant must be EMAIL,MEMBER=ROLE, got $grant"
  commands+=("gcloud iam service-accounts add-iam-policy-binding $account --member=$member --role=$role")
done
for line in "${commands[@]}"; do
  read -ra command <<<"$line"
  command+=(--format=none --project="$PROJECT")
  member=${line#*--member=} member=${member%% *}
  show "${command[@]}"
  if [[ $DRY_RUN == 1 ]]; then continue; fi
  if ! err=$("${command[@]}" 2>&1 >/dev/null); then
    if grep -qiE 'does not exist|not found|INVALID_ARGUMENT' <<<"$err"; then
      missing=1
      note "not yet: $member does not exist (Google creates it with the project's first tuning job)"
    else
      echo "$err" >&2
      exit 1
    fi
  fi
done
if ((missing)); then
  note "After the first tuning job has started, run this step again:"
  again="bash deploy/gcp/grant-tuning-agent.sh --project $PROJECT --bucket $BUCKET"
  for grant in "${GRANTS[@]}"; do again+=" --grant $(printf '%q' "$grant")"; done
  for grant in "${SA_GRANTS[@]}"; do again+=" --sa-grant $(printf '%q' "$grant")"; done
  note "  $again"
  note "(or rerun deploy.sh / terraform apply)."
fi
