"""The Celery task names: the public ones other services send by name, and the project's own.

Stable: producers in other services and other languages use these strings.
"""

GENERATE = "kie.generate"   # public: input -> result dict, when kie.ai has finished
DOWNLOAD = "kie.download"   # public: result dict -> result dict with files
SUBMIT = "kie.submit"       # a due createTask attempt
CHECK = "kie.check"         # a due status poll
COMPLETE = "kie.complete"   # a callback was recorded (sent by the webhook)
SWEEP = "kie.sweep"         # beat, every KIE_SWEEP_INTERVAL
