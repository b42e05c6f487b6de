"""`python -m services.scheduler`: run the scheduler until SIGTERM/SIGINT."""

from services.common.process import run
from services.scheduler.app import SERVICE_NAMES, start_scheduler
from services.scheduler.settings import SchedulerSettings

if __name__ == "__main__":
    run(SchedulerSettings, start_scheduler, SERVICE_NAMES)
