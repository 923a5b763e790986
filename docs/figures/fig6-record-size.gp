set datafile separator whitespace
set key inside right top box opaque
set grid
set border 3
set tics nomirror
set pointsize 1.2
set style line 1 lc rgb '#000000' lw 2 pt 5
set style line 2 lc rgb '#1f77b4' lw 2 pt 7
set style line 3 lc rgb '#d62728' lw 2 pt 9
set style line 4 lc rgb '#2ca02c' lw 2 pt 11
set style line 5 lc rgb '#9467bd' lw 2 pt 13
set style line 6 lc rgb '#ff7f0e' lw 2 pt 3
set style line 9 lc rgb '#000000' lw 2 pt 6 ps 3
set title 'TX: download throughput vs TLS record size'
set xlabel 'TLS record size (KiB of plaintext)'
set ylabel 'throughput (MB/s, 10^6 B/s)'
set logscale x 2
set xrange [0.8:20]
set yrange [0:*]
plot 'fig6-record-size.dat' index 0 using ($1*0.94):2:3:4 with yerrorlines ls 1 title "plain", 'fig6-record-size.dat' index 1 using ($1*0.97):2:3:4 with yerrorlines ls 2 title "sw", 'fig6-record-size.dat' index 2 using ($1*1):2:3:4 with yerrorlines ls 3 title "nic", 'fig6-record-size.dat' index 3 using ($1*1.03):2:3:4 with yerrorlines ls 4 title "nic-tagcache", 'fig6-record-size.dat' index 4 using ($1*1.06):2:3:4 with yerrorlines ls 5 title "mbedtls"
