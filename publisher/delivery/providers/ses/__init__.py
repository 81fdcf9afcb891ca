"""Amazon SES: sending raw MIME through SESv2 (`sending`) at the account's pace (`pacing`),
what its answers mean (`answers`), and the SNS messages (`sns`) that carry its bounce and
complaint notifications (`notifications`)."""
