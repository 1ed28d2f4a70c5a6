# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_acaso_mail_global_optspecs
    string join \n amqp-url= queue= brevo-url= api-key= pushgateway= tz= now= state-dir= state-url= state-password-file= state-ca-file= json color= q/quiet lock-wait= timeout= scan= credits-reset= api-key-file= amqp-url-file= amqp-ca-file= pushgateway-user= pushgateway-password-file= pushgateway-ca-file= h/help V/version
end

function __fish_acaso_mail_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_acaso_mail_global_optspecs) -- $cmd 2>/dev/null
    # The last word may be an option waiting for its value: parse without it.
    or argparse -s (__fish_acaso_mail_global_optspecs) -- $cmd[1..-2] 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_acaso_mail_using_subcommand
    set -l cmd (__fish_acaso_mail_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -s V -l version -d 'Print version'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -f -a "publish" -d 'Publish mail jobs: N realistic mock jobs, or the lines of a JSON Lines file'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -f -a "drain-hourly" -d 'Send up to --limit of the most urgent mails, never more than the credits left'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -f -a "drain-eod" -d 'Send as many of the most urgent mails as the remaining credits allow'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -f -a "credits" -d 'Print how many emails can still be sent today'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -f -a "peek" -d 'Show the next mails in the order a drain would take them, consuming nothing'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -f -a "stats" -d 'Queue depths, urgency breakdown, credits'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -f -a "reprioritize" -d 'Re-publish every queued mail with today\'s urgency (run daily, after midnight)'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -f -a "dead-letters" -d 'List parked mails with their reasons; replay them to the queue, or purge them'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -f -a "doctor" -d 'Check every dependency of the configured deployment and print a checklist; changes nothing and sends nothing unless asked'
complete -c acaso-mail -n "__fish_acaso_mail_needs_command" -f -a "events" -d 'Read Brevo\'s delivery events and blocked contacts since the last read, record them, and publish each outcome to the app\'s exchange'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -s n -l count -d 'Publish N mock jobs like the Acaso producer\'s; 0 only creates the queues' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l file -d 'Publish the JSON Lines of PATH (- for stdin); all or nothing' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l to -d 'Recipient address of the mock jobs' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand publish" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l limit -d 'At most N mails this run, or auto, or unlimited [default: 12]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l reserve -d 'Credits --limit auto keeps back for urgent mail' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l concurrency -d 'Sends in flight to Brevo at once' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l max-attempts -d 'Failed attempts (network, 5xx, 429) before a mail is parked' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l strict-limit -d 'Stop at --limit even for mails due today'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l dry-run -d 'Show what would be sent or set aside, in order, and touch nothing'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l no-suppress -d 'Send to addresses Brevo reported dead or blocked, too'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-hourly" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l concurrency -d 'Sends in flight to Brevo at once' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l max-attempts -d 'Failed attempts (network, 5xx, 429) before a mail is parked' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l dry-run -d 'Show what would be sent or set aside, in order, and touch nothing'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l no-suppress -d 'Send to addresses Brevo reported dead or blocked, too'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand drain-eod" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand credits" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -s n -l count -d 'How many mails to show' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand peek" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l dry-run -d 'Show what would move (old and new priority) and touch nothing'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand reprioritize" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -f -a "list" -d 'List them (the default)'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -f -a "replay" -d 'Put the selected ones back in the main queue, body and properties unchanged'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -f -a "purge" -d 'Delete the selected ones for good'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and not __fish_seen_subcommand_from list replay purge recheck" -f -a "recheck" -d 'Ask Brevo\'s log about the mails parked as uncertain_send: those Brevo sent are removed (and journaled as sent), those it never got are replayed'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -s n -l count -d 'At most this many' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l index -d 'These positions, as `dead-letters list` numbers them (comma-separated)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l reason -d 'Those parked for this reason' -r -f -a "expired\t''
malformed\t''
not_utf8\t''
too_large\t''
unknown_template\t''
invalid_address\t''
brevo_rejected\t''
brevo_duplicate\t''
retries_exhausted\t''
uncertain_send\t''
suppressed\t''"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l all -d 'All of them'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l index -d 'These positions, as `dead-letters list` numbers them (comma-separated)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l reason -d 'Those parked for this reason' -r -f -a "expired\t''
malformed\t''
not_utf8\t''
too_large\t''
unknown_template\t''
invalid_address\t''
brevo_rejected\t''
brevo_duplicate\t''
retries_exhausted\t''
uncertain_send\t''
suppressed\t''"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l all -d 'All of them'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from purge" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand dead-letters; and __fish_seen_subcommand_from recheck" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l to -d 'The probe\'s recipient: your own address' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l template -d 'The probe\'s template [default: that of the first queued mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l templates -d 'Also try each queued template in Brevo\'s sandbox (nothing sent)'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l idempotency-probe -d 'Prove Brevo refuses a repeated key: ONE REAL MAIL to --to (one credit)'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l exchange -d 'The exchange delivery outcomes are published to' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l page-size -d 'Events asked of Brevo per page (at most 5000)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l max-events -d 'Events read at most this run; the next run goes on from there' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l amqp-url -d 'RabbitMQ URL (amqp:// or amqps://); its password is never printed [default: amqp://guest:guest@127.0.0.1:5672/%2f]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l queue -d 'The mail queue; retry and parking queues are named after it [default: acaso.mail]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l brevo-url -d 'Brevo API base URL [env: SENDINBLUE_URL, BREVO_URL] [default: https://api.brevo.com/v3]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l api-key -d 'Brevo API key [env: SENDINBLUE_API_KEY, BREVO_API_KEY]; required by commands that call Brevo' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l pushgateway -d 'Pushgateway URL to push run metrics to (no push when unset)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l tz -d 'Time zone that defines "today" and renders dates [default: America/Recife]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l now -d 'An RFC 3339 instant used as "now" for urgency, expiry and "today" [default: the clock]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l state-dir -d 'Where the sent-mail journal and the run lock live [default: $XDG_STATE_HOME/acaso-mail]' -r -f -a "(__fish_complete_directories)"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l state-url -d 'Keep the state (journal, tallies, run lock) in PostgreSQL, shared by every host: postgres://USER@HOST/DB[?sslmode=verify-full] [env: ACASO_MAIL_STATE_URL, DATABASE_URL] [default: SQLite in --state-dir]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l state-password-file -d 'File holding the PostgreSQL password, when the state URL has none [env: ACASO_MAIL_STATE_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l state-ca-file -d 'PEM file of the CA(s) that signed PostgreSQL\'s certificate (sslmode=verify-full)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l color -d 'When to colour tables' -r -f -a "auto\t'Colour when stdout is a terminal and NO_COLOR is unset'
always\t'Always colour'
never\t'Never colour'"
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l lock-wait -d 'Seconds to wait for another run\'s lock before giving up (exit 6)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l timeout -d 'Seconds to wait for RabbitMQ or Brevo to connect or answer' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l scan -d 'At most this many mails read from the head of the queue to count urgency bands (stats, the pushed band gauges, dry runs); the bands beyond are reported as partial' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l credits-reset -d 'When Brevo\'s daily credits reset: HH:MM in --tz, or followed by a zone ("00:00 UTC"), overriding the reset acaso-mail observed [env: ACASO_MAIL_CREDITS_RESET] [default: the observed reset, else local midnight]' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l api-key-file -d 'File holding the Brevo API key [env: SENDINBLUE_API_KEY_FILE, BREVO_API_KEY_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l amqp-url-file -d 'File holding the RabbitMQ URL, password included [env: QUEUE_SERVICE_URL_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l amqp-ca-file -d 'PEM file of the CA(s) that signed RabbitMQ\'s certificate, for amqps:// with a private CA' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l pushgateway-user -d 'User for the Pushgateway\'s basic auth (password: PUSHGATEWAY_PASSWORD or a file)' -r -f
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l pushgateway-password-file -d 'File holding the Pushgateway password [env: PUSHGATEWAY_PASSWORD_FILE]' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l pushgateway-ca-file -d 'PEM file of the CA(s) that signed the Pushgateway\'s certificate (https://)' -r -F
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -l json -d 'Print exactly one JSON document on stdout, nothing else'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -s q -l quiet -d 'No summary on success (errors still go to stderr): for cron'
complete -c acaso-mail -n "__fish_acaso_mail_using_subcommand events" -s h -l help -d 'Print help (see more with \'--help\')'
