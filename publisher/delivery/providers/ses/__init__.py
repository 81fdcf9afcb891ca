"""Amazon SES: sending raw MIME through SESv2 at the account's pace, its answers (refusals and
throttles), and the SNS notifications that carry its bounces and complaints."""
